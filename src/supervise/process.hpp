// process: launching and watching backend processes behind a small interface.
//
// process_launcher::spawn starts argv[0] (an absolute path, or a name looked up in PATH) with the
// given environment additions, stdin from /dev/null and stdout+stderr appended to log_path. The real
// implementation (posix_launcher) forks and execs; the child gets its own process group (setpgid) and
// PR_SET_PDEATHSIG=SIGTERM, so backends die with the supervisor even if it is killed with -9, and
// signal_group() reaches helpers the backend forks. An exec failure (missing binary, no permission) is
// reported by spawn() as an error, not as a child that exits 127.
//
// reap() never blocks: it returns the children of this launcher that exited since the last call.
//
// Thread-safety: one thread (the supervisor's) calls every method. PR_SET_PDEATHSIG is tied to the
// thread that forks: keep that thread alive as long as the backends should live.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace agifarm::supervise {

struct spawn_request {
  std::vector<std::string> argv;           // argv[0] is the program
  std::map<std::string, std::string> env;  // added to (or overriding) the supervisor's environment
  std::string log_path;                    // stdout and stderr are appended here
};

struct exit_info {
  int pid = 0;
  bool signaled = false;  // true: killed by signal `code`; false: exited with status `code`
  int code = 0;
  std::string describe() const;  // "exit status 1", "killed by signal 9 (Killed)"
};

class process_launcher {
 public:
  virtual ~process_launcher() = default;
  virtual result<int> spawn(const spawn_request& req) = 0;  // pid; error names the program and errno
  virtual void signal_group(int pid, int sig) = 0;          // to the whole process group of pid
  virtual std::vector<exit_info> reap() = 0;
};

// fork + exec, setpgid, PR_SET_PDEATHSIG. Only reaps the children it spawned.
class posix_launcher final : public process_launcher {
 public:
  result<int> spawn(const spawn_request& req) override;
  void signal_group(int pid, int sig) override;
  std::vector<exit_info> reap() override;

 private:
  std::vector<int> children_;
};

// Helpers for processes that are not our children (a previous run's backends, `agifarm down`).
bool process_alive(int pid);                   // exists and is not a zombie
std::string process_cmdline(int pid);          // argv joined by spaces, "" if gone
std::uint64_t process_rss_bytes(int pid);      // VmRSS, 0 if gone
void signal_process_group(int pgid, int sig);  // kill(-pgid, sig), ignoring ESRCH

}  // namespace agifarm::supervise
