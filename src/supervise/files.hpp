// files: the filesystem operations the supervisor needs (backend logs, state files), behind an interface
// so tests can use an in-memory fake.
//
// Log rotation is "copy-truncate" (as logrotate's copytruncate): a backend keeps its O_APPEND log open,
// so rotate_if_larger copies path to path.1 (shifting path.1 -> path.2 ... up to `keep`) and truncates
// path; the backend's next write lands at the new end. Lines written during the copy may be lost.
//
// Thread-safety: real_files has no state and may be used from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace agifarm::supervise {

class file_system {
 public:
  virtual ~file_system() = default;
  // The last `n` lines of a text file (at most the last 64 KiB are read); empty if missing.
  virtual std::vector<std::string> tail(const std::string& path, int n) = 0;
  virtual void rotate_if_larger(const std::string& path, std::uint64_t max_bytes, int keep) = 0;
  virtual void append_line(const std::string& path, const std::string& line) = 0;
};

class real_files final : public file_system {
 public:
  std::vector<std::string> tail(const std::string& path, int n) override;
  void rotate_if_larger(const std::string& path, std::uint64_t max_bytes, int keep) override;
  void append_line(const std::string& path, const std::string& line) override;
};

// Writes content to path atomically (temp file + rename). Error names the path.
status write_file_atomic(const std::string& path, const std::string& content);
result<std::string> read_file(const std::string& path);
status make_dirs(const std::string& path);

// The most telling line of a failed backend's log: the first line mentioning an error or failure
// ("failed to allocate buffer", "error: invalid argument: -x") written after the last "[agifarm]"
// start marker (the supervisor writes one before each start), without llama.cpp's time/level
// prefix; "" if there is none.
std::string failure_reason(const std::vector<std::string>& log_tail);

}  // namespace agifarm::supervise
