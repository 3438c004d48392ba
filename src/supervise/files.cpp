#include "supervise/files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace agifarm::supervise {
namespace fs = std::filesystem;

std::vector<std::string> real_files::tail(const std::string& path, int n) {
  std::vector<std::string> out;
  std::ifstream f(path, std::ios::binary);
  if (!f || n <= 0) return out;
  f.seekg(0, std::ios::end);
  std::streamoff size = f.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - 65536);
  f.seekg(start);
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream is(data);
  std::string line;
  bool first = start > 0;
  while (std::getline(is, line)) {
    if (first) {
      first = false;
      continue;
    }  // probably a partial line
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  if (out.size() > static_cast<size_t>(n)) out.erase(out.begin(), out.end() - n);
  return out;
}

void real_files::rotate_if_larger(const std::string& path, std::uint64_t max_bytes, int keep) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec || size <= max_bytes || keep < 1) return;
  for (int i = keep - 1; i >= 1; --i) {
    fs::rename(fmt::format("{}.{}", path, i), fmt::format("{}.{}", path, i + 1), ec);
  }
  fs::copy_file(path, path + ".1", fs::copy_options::overwrite_existing, ec);
  if (::truncate(path.c_str(), 0) != 0) return;
}

void real_files::append_line(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::string l = line + "\n";
  if (::write(fd, l.data(), l.size()) < 0) {
  }
  ::close(fd);
}

status write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(fmt::format("cannot write {}: {}", tmp, std::strerror(e)));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return make_error(fmt::format("cannot write {}: {}", path, std::strerror(e)));
  }
  return status::success();
}

result<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(fmt::format("cannot read {}: {}", path, std::strerror(errno)), 2);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

status make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return make_error(fmt::format("cannot create directory {}: {}", path, ec.message()));
  return status::success();
}

std::string failure_reason(const std::vector<std::string>& log_tail) {
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  // Only this process's lines: after the last start marker.
  std::size_t from = 0;
  for (std::size_t k = log_tail.size(); k-- > 0;)
    if (log_tail[k].rfind("[agifarm]", 0) == 0) {
      from = k + 1;
      break;
    }
  // The first error is the cause; later ones are usually its consequences ("exiting due to ...").
  for (std::size_t k = from; k < log_tail.size(); ++k) {
    std::string l = lower(log_tail[k]);
    for (const char* key : {"error", "failed", "invalid", "cannot", "unable", "out of memory", "not found",
                            "no such file", "unknown argument", "abort"}) {
      if (l.find(key) == std::string::npos) continue;
      // Drop llama.cpp's "0.00.035.277 E " prefix (time and level).
      const std::string& line = log_tail[k];
      std::size_t p = 0;
      while (p < line.size() && (std::isdigit(static_cast<unsigned char>(line[p])) || line[p] == '.')) ++p;
      if (p > 0 && p + 3 <= line.size() && line[p] == ' ' &&
          std::isupper(static_cast<unsigned char>(line[p + 1])) && line[p + 2] == ' ')
        return line.substr(p + 3);
      return line;
    }
  }
  return {};
}

}  // namespace agifarm::supervise
