#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

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
  return make_error(
      fmt::format("emit: unknown target '{}' (llama, compose, systemd, vllm or deepspeed)", target), 2);
}

std::string new_backend_key() {
  std::random_device rd;  // libstdc++: getrandom / /dev/urandom (or RDRAND), never a seeded PRNG
  std::string key;
  for (int i = 0; i < 8; ++i) key += fmt::format("{:08x}", static_cast<std::uint32_t>(rd()));
  return key;
}

namespace {

// A secret file: created (or truncated) with mode 0600 and fchmod'ed before any byte of it is written, so
// the content never sits in a file others may read; O_NOFOLLOW so a planted symlink is not written through.
status write_secret(const fs::path& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(fmt::format("emit: cannot write {}: {}", path.string(), std::strerror(errno)));
  auto fail = [&](const char* what) {
    int e = errno;
    ::close(fd);
    return make_error(fmt::format("emit: cannot {} {}: {}", what, path.string(), std::strerror(e)));
  };
  if (::fchmod(fd, 0600) != 0) return fail("set the mode of");
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0)
    return make_error(fmt::format("emit: cannot write {}: {}", path.string(), std::strerror(errno)));
  return {};
}

}  // namespace

status write_files(const std::string& dir, const files& out, bool force) {
  std::error_code ec;
  fs::path root(dir);
  for (const auto& f : out) {
    fs::path rel(f.path);
    if (rel.is_absolute() || f.path.find("..") != std::string::npos)
      return make_error(fmt::format("emit: refusing to write '{}' outside the output directory", f.path));
    if (!force && fs::exists(root / rel, ec))
      return make_error(
          fmt::format("emit: {} already exists; use --force to overwrite", (root / rel).string()));
  }
  for (const auto& f : out) {
    fs::path path = root / f.path;
    fs::create_directories(path.parent_path(), ec);
    if (ec)
      return make_error(fmt::format("emit: cannot create {}: {}", path.parent_path().string(), ec.message()));
    if (f.secret) {
      if (auto s = write_secret(path, f.content); !s) return s;
      continue;
    }
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o << f.content;
    o.close();
    if (!o) return make_error(fmt::format("emit: cannot write {}", path.string()));
    auto perms =
        fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read;
    if (f.executable) perms |= fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
    fs::permissions(path, perms, ec);
    if (ec)
      return make_error(fmt::format("emit: cannot set the mode of {}: {}", path.string(), ec.message()));
  }
  return {};
}

}  // namespace agifarm::emit
