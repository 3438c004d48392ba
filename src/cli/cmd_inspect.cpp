// agifarm inspect FILE.gguf [...] [--json]
#include <fmt/format.h>

#include <boost/json.hpp>
#include <iostream>

#include "cli/commands.hpp"
#include "common/format.hpp"
#include "gguf/gguf.hpp"

namespace agifarm::cli {
namespace {

boost::json::object to_json(const gguf::summary& s) {
  boost::json::object by_class, by_type;
  for (const auto& [k, v] : s.tensor_bytes_by_class) by_class[k] = v;
  for (const auto& [k, v] : s.bytes_by_type) by_type[k] = v;
  return {{"file", s.file},
          {"name", s.name},
          {"gguf_version", s.version},
          {"architecture", s.architecture},
          {"n_layers", s.n_layers},
          {"n_embd", s.n_embd},
          {"n_head", s.n_head},
          {"n_head_kv", s.n_head_kv},
          {"key_length", s.key_length},
          {"value_length", s.value_length},
          {"context_length", s.context_length},
          {"n_vocab", s.n_vocab},
          {"n_ff", s.n_ff},
          {"n_experts", s.n_experts},
          {"n_experts_used", s.n_experts_used},
          {"n_ff_exp", s.n_ff_exp},
          {"n_params", s.n_params},
          {"n_tensors", s.n_tensors},
          {"n_split", s.n_split},
          {"file_bytes", s.file_bytes},
          {"tensor_bytes_by_class", by_class},
          {"bytes_by_type", by_type}};
}

void print_human(const gguf::summary& s) {
  fmt::print("{}\n", s.file);
  fmt::print("  architecture   {}{}\n", s.architecture, s.name.empty() ? "" : fmt::format("  ({})", s.name));
  fmt::print("  parameters     {:.3f} B   file {}{}\n", static_cast<double>(s.n_params) / 1e9,
             human_bytes(s.file_bytes, 2), s.n_split > 1 ? fmt::format(" in {} parts", s.n_split) : "");
  fmt::print("  layers {}  embd {}  heads {} (kv {})  head dim k/v {}/{}  ctx {}  vocab {}\n", s.n_layers,
             s.n_embd, s.n_head, s.n_head_kv, s.key_length, s.value_length, s.context_length, s.n_vocab);
  if (s.n_experts)
    fmt::print("  experts {} (used {})  expert ffn {}\n", s.n_experts, s.n_experts_used, s.n_ff_exp);
  fmt::print("  bytes by tensor class:\n");
  for (const auto& [k, v] : s.tensor_bytes_by_class)
    if (v) fmt::print("    {:<18} {:>12}\n", k, human_bytes(v, 2));
  fmt::print("  bytes by type:\n");
  for (const auto& [k, v] : s.bytes_by_type) fmt::print("    {:<18} {:>12}\n", k, human_bytes(v, 2));
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Read GGUF headers (never the weights) and describe each model");
  static std::vector<std::string> files;
  static bool as_json = false;
  cmd->add_option("files", files, "GGUF files (the first part of a split model)")->required();
  cmd->add_flag("--json", as_json, "one JSON object per file, one per line");
  cmd->callback([] {
    int rc = 0;
    for (const auto& f : files) {
      auto m = gguf::read_model(f);
      if (!m) {
        std::cerr << "agifarm inspect: " << m.err().message << "\n";
        rc = m.err().exit_code;
        continue;
      }
      auto s = gguf::summarize(*m);
      if (as_json)
        std::cout << boost::json::serialize(to_json(s)) << "\n";
      else
        print_human(s);
    }
    if (rc) throw CLI::RuntimeError(rc);
  });
}

}  // namespace agifarm::cli
