#include "supervise/process.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace agifarm::supervise {

std::string exit_info::describe() const {
  if (signaled) {
    const char* s = strsignal(code);
    return fmt::format("killed by signal {} ({})", code, s ? s : "?");
  }
  return fmt::format("exit status {}", code);
}

namespace {

// Writes all of buf to fd; async-signal-safe (used between fork and exec).
void write_all(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

result<int> posix_launcher::spawn(const spawn_request& req) {
  if (req.argv.empty() || req.argv[0].empty()) return make_error("spawn: empty argv");
  const std::string& prog = req.argv[0];

  // Everything the child needs is prepared before fork: the child may only make async-signal-safe calls.
  std::vector<std::string> env_storage;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    std::string key(kv.substr(0, eq));
    if (req.env.count(key)) continue;
    env_storage.emplace_back(kv);
  }
  for (const auto& [k, v] : req.env) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = req.argv;
  std::vector<char*> argv;
  for (auto& s : argv_storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  int log_fd = ::open(req.log_path.empty() ? "/dev/null" : req.log_path.c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0)
    return make_error(fmt::format("cannot open log file {}: {}", req.log_path, std::strerror(errno)));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int errpipe[2];
  if (null_fd < 0 || ::pipe2(errpipe, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return make_error(fmt::format("spawn {}: {}", prog, std::strerror(e)));
  }
  const pid_t parent = ::getpid();
  const bool has_slash = prog.find('/') != std::string::npos;

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(log_fd);
    ::close(null_fd);
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    return make_error(fmt::format("fork for {}: {}", prog, std::strerror(e)));
  }
  if (pid == 0) {
    // Child: own process group, die with the parent, redirect, exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // parent died before prctl took effect
    // Restore default signal dispositions and an empty mask (the supervisor blocks/handles some).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) ::signal(s, SIG_DFL);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    // No inherited descriptors beyond 0-2 (a gateway's listening socket must not leak into backends).
    ::syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
    if (has_slash)
      ::execve(argv[0], argv.data(), envp.data());
    else
      ::execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    write_all(errpipe[1], &e, sizeof e);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent: no window where signal_group misses the child
  ::close(errpipe[1]);
  ::close(log_fd);
  ::close(null_fd);
  int child_errno = 0;
  ssize_t n;
  do n = ::read(errpipe[0], &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  ::close(errpipe[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    int st;
    ::waitpid(pid, &st, 0);
    return make_error(fmt::format("cannot execute {}: {}", prog, std::strerror(child_errno)));
  }
  children_.push_back(pid);
  return static_cast<int>(pid);
}

void posix_launcher::signal_group(int pid, int sig) {
  if (pid <= 0) return;
  if (::kill(-pid, sig) != 0 && errno == ESRCH) ::kill(pid, sig);
}

std::vector<exit_info> posix_launcher::reap() {
  std::vector<exit_info> out;
  for (auto it = children_.begin(); it != children_.end();) {
    int st = 0;
    pid_t r = ::waitpid(*it, &st, WNOHANG);
    if (r == *it || (r < 0 && errno == ECHILD)) {
      exit_info e;
      e.pid = *it;
      if (r == *it && WIFSIGNALED(st)) {
        e.signaled = true;
        e.code = WTERMSIG(st);
      } else if (r == *it)
        e.code = WEXITSTATUS(st);
      else
        e.code = -1;
      out.push_back(e);
      // The process group may hold helpers the backend forked; they go with it.
      ::kill(-e.pid, SIGKILL);
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

bool process_alive(int pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(f, line)) return false;
  auto rp = line.rfind(')');
  if (rp == std::string::npos || rp + 2 >= line.size()) return true;
  char state = line[rp + 2];
  return state != 'Z' && state != 'X';
}

std::string process_cmdline(int pid) {
  std::ifstream f(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && s.back() == '\0') s.pop_back();
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

std::uint64_t process_rss_bytes(int pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream is(line.substr(6));
      std::uint64_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

void signal_process_group(int pgid, int sig) {
  if (pgid > 0) ::kill(-pgid, sig);
}

}  // namespace agifarm::supervise
