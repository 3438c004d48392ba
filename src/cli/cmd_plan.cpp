// agifarm plan --inventory FILE --model M.gguf [--model ...] [--role NAME:MODEL:ctx=N:agents=N] [--json]
// Every strategy for every model on the inventory (or this machine), ranked, with a recommendation and
// the deployment that runs it. Exit 3 when nothing fits, 2 for bad input. Memory measured by earlier
// farms (<state dir>/measured-memory.json) sizes the margins, and the plan says so (--no-measured: not).
#include <fmt/format.h>

#include <boost/json.hpp>
#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "farm/memory_feedback_plan.hpp"
#include "farm/state.hpp"
#include "fit/fit.hpp"
#include "hw/hw.hpp"
#include "plan/planner.hpp"

namespace agifarm::cli {
namespace {

[[noreturn]] void fail(const error& e) {
  fmt::print(stderr, "agifarm plan: {}\n", e.message);
  throw CLI::RuntimeError(e.exit_code);
}

// NAME[:MODEL][:ctx=N][:agents=N]
result<plan::role_request> parse_role(const std::string& text) {
  plan::role_request r;
  std::vector<std::string> parts;
  std::string cur;
  for (char c : text) {
    if (c == ':') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  if (parts.empty() || parts[0].empty())
    return make_error(fmt::format("--role '{}': expected NAME:MODEL:ctx=N:agents=N", text), 2);
  r.name = parts[0];
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto& p = parts[i];
    auto num = [&](const std::string& key, int& out) -> status {
      try {
        std::size_t used = 0;
        long v = std::stol(p.substr(key.size()), &used);
        if (used != p.size() - key.size() || v <= 0 || v > 10'000'000) throw std::invalid_argument(p);
        out = static_cast<int>(v);
        return {};
      } catch (const std::exception&) {
        return make_error(fmt::format("--role '{}': '{}' needs a positive integer", text, p), 2);
      }
    };
    if (p.rfind("ctx=", 0) == 0) {
      if (auto s = num("ctx=", r.ctx); !s) return s.err();
    } else if (p.rfind("agents=", 0) == 0) {
      if (auto s = num("agents=", r.agents); !s) return s.err();
    } else if (i == 1) {
      r.model = p;
    } else {
      return make_error(fmt::format("--role '{}': unknown part '{}' (ctx=N or agents=N)", text, p), 2);
    }
  }
  return r;
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("plan", "Compare every strategy for your models on your hardware and recommend one");
  static std::string inventory_file;
  static std::vector<std::string> model_files, role_texts;
  static bool as_json = false;
  static std::string kv_type = "f16";
  static std::string ask_llama = "auto", llama_bin, state_dir;
  static bool no_measured = false;
  cmd->add_option("--inventory", inventory_file, "inventory YAML (default: discover this machine)");
  cmd->add_option("--model", model_files, "GGUF model file (repeatable); NAME=FILE names it")->required();
  cmd->add_option("--role", role_texts,
                  "NAME[:MODEL][:ctx=N][:agents=N] (repeatable; default fast, code, think)");
  cmd->add_option("--kv-type", kv_type, "KV cache type of the planned backends (f16, q8_0, q4_0)");
  cmd->add_flag("--json", as_json, "print the plan document (docs/plan-format.md)");
  cmd->add_option(
         "--llama", ask_llama,
         "auto: for architectures whose graph agifarm does not replay, measure their compute buffers "
         "with llama.cpp's llama-fit-params (when a build is found); off: never")
      ->check(CLI::IsMember({"auto", "off"}));
  cmd->add_option("--state-dir", state_dir,
                  "farm state directory whose measured memory (measured-memory.json) sizes the margins "
                  "(default: agifarm up's)");
  cmd->add_flag("--no-measured", no_measured, "ignore measured memory: plan with the default margins");
  cmd->add_option("--llama-bin", llama_bin,
                  "llama.cpp binaries (default $AGIFARM_LLAMA_BIN or agifarm's own build)");
  cmd->callback([] {
    auto cat = hw::load_default_catalogue();
    if (!cat) fail(cat.err());
    hw::inventory inv;
    if (!inventory_file.empty()) {
      auto r = hw::load_inventory(inventory_file, *cat);
      if (!r) fail(r.err());
      inv = std::move(r).value();
    } else {
      hw::discover_options o;
      auto d = hw::discover_local(hw::real_system(), *cat, o);
      if (!d) fail(d.err());
      inv = hw::local_inventory(d->local);
    }
    std::vector<plan::plan_model> models;
    std::vector<std::string> notes;
    for (const auto& spec : model_files) {
      std::string name, file = spec;
      if (auto eq = spec.find('='); eq != std::string::npos && eq > 0) {
        name = spec.substr(0, eq);
        file = spec.substr(eq + 1);
      }
      auto m = gguf::read_model(file);
      if (!m) fail(m.err());
      plan::plan_model pm;
      pm.shape = plan::model_shape_of(*m);
      pm.shape.file = std::filesystem::absolute(file).string();
      pm.name = name.empty() ? std::filesystem::path(file).stem().string() : name;
      if (ask_llama != "off") {
        auto note =
            fit::calibrate_compute(pm.shape, llama_bin.empty() ? farm::default_llama_bin() : llama_bin);
        if (!note.empty()) notes.push_back(note);
      }
      for (const char* key : {"general.source.repo_url", "general.base_model.0.repo_url"})
        if (auto v = m->head().get_string(key); v && pm.hf_repo.empty()) pm.hf_repo = *v;
      models.push_back(std::move(pm));
    }
    std::vector<plan::role_request> roles;
    for (const auto& t : role_texts) {
      auto r = parse_role(t);
      if (!r) fail(r.err());
      roles.push_back(*r);
    }
    plan::plan_options opt;
    opt.kv_type = kv_type;
    if (!no_measured) {  // what earlier farms measured sizes the margins (farm/memory_feedback.hpp)
      std::vector<farm::model_ref> refs;
      for (const auto& m : models) refs.push_back({m.name, m.shape.file});
      const auto file = farm::memory_feedback_file(state_dir.empty() ? farm::default_state_dir() : state_dir);
      auto lines = farm::apply_memory_feedback(file, refs, inv, opt);
      notes.insert(notes.end(), lines.begin(), lines.end());  // shown as the plan's notes (and in its JSON)
    }
    auto doc = plan::make_plan(inv, models, roles, opt);
    if (!doc) fail(doc.err());
    doc->notes.insert(doc->notes.begin(), notes.begin(), notes.end());
    if (as_json)
      std::cout << boost::json::serialize(plan::to_json(*doc)) << "\n";
    else
      std::cout << plan::format_plan(*doc);
    if (!plan::plan_fits(*doc)) {
      if (as_json) fmt::print(stderr, "agifarm plan: nothing fits (see why_not / fix in the candidates)\n");
      throw CLI::RuntimeError(3);
    }
  });
}

}  // namespace agifarm::cli
