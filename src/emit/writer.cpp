#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "emit/emit.hpp"

namespace agifarm::emit {
namespace fs = std::filesystem;

const std::vector<std::string>& target_names() {
  static const std::vector<std::string> names{"llama", "compose", "systemd", "vllm", "deepspeed"};
  return names;
}

result<files> emit_target(const std::string& target, const emit_input& in, const emit_options& opt) {
  if (target == "llama") return emit_llama(in, opt);
  if (target == "compose") return emit_compose(in, opt);
  if (target == "systemd") return emit_systemd(in, opt);
  if (target == "vllm") return emit_vllm(in, opt);
  if (target == "deepspeed") return emit_deepspeed(in, opt);
  return make_error(fmt::format("emit: unknown target '{}' (llama, compose, systemd, vllm or deepspeed)", target), 2);
}

status write_files(const std::string& dir, const files& out, bool force) {
  std::error_code ec;
  fs::path root(dir);
  for (const auto& f : out) {
    fs::path rel(f.path);
    if (rel.is_absolute() || f.path.find("..") != std::string::npos)
      return make_error(fmt::format("emit: refusing to write '{}' outside the output directory", f.path));
    if (!force && fs::exists(root / rel, ec))
      return make_error(fmt::format("emit: {} already exists; use --force to overwrite", (root / rel).string()));
  }
  for (const auto& f : out) {
    fs::path path = root / f.path;
    fs::create_directories(path.parent_path(), ec);
    if (ec) return make_error(fmt::format("emit: cannot create {}: {}", path.parent_path().string(), ec.message()));
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o << f.content;
    o.close();
    if (!o) return make_error(fmt::format("emit: cannot write {}", path.string()));
    auto perms = fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read;
    if (f.executable) perms |= fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
    fs::permissions(path, perms, ec);
    if (ec) return make_error(fmt::format("emit: cannot set the mode of {}: {}", path.string(), ec.message()));
  }
  return {};
}

}  // namespace agifarm::emit
