#include "remote/remote.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>

namespace agifarm::remote {
namespace {

using clock_type = std::chrono::steady_clock;

struct pipe_pair {
  int r = -1, w = -1;
  bool open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    r = fds[0];
    w = fds[1];
    return true;
  }
  void close_all() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
    r = w = -1;
  }
};

// Runs argv with `input` on stdin; stdout and stderr captured; killed at the deadline.
result<command_output> run_local(const std::vector<std::string>& argv, std::string_view input,
                                 std::chrono::milliseconds timeout, bool& timed_out) {
  timed_out = false;
  pipe_pair in, out, err;
  if (!in.open() || !out.open() || !err.open()) {
    in.close_all();
    out.close_all();
    err.close_all();
    return make_error(fmt::format("pipe: {}", std::strerror(errno)));
  }
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    in.close_all();
    out.close_all();
    err.close_all();
    return make_error(fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(in.r, 0);
    ::dup2(out.w, 1);
    ::dup2(err.w, 2);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    ::execvp(cargv[0], cargv.data());
    std::string msg = fmt::format("cannot run {}: {}\n", argv[0], std::strerror(errno));
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  ::close(in.r);
  ::close(out.w);
  ::close(err.w);
  in.r = out.w = err.w = -1;
  ::fcntl(in.w, F_SETFL, O_NONBLOCK);
  command_output res;
  std::size_t sent = 0;
  if (input.empty()) {
    ::close(in.w);
    in.w = -1;
  }
  const auto deadline = clock_type::now() + timeout;
  char buf[16384];
  for (auto& fd : {out.r, err.r}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  auto drain = [&](int& fd, std::string& to) {
    for (;;) {
      ssize_t r = ::read(fd, buf, sizeof buf);
      if (r > 0) {
        to.append(buf, static_cast<std::size_t>(r));
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        ::close(fd);
        fd = -1;
      }
      return;
    }
  };
  // The loop ends when the child exits, not at EOF: ssh's ControlPersist master runs on in the
  // background holding the same stdout/stderr, so EOF may never come.
  int st = 0;
  bool exited = false;
  while (!exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p[3];
    int n = 0;
    int io = -1;
    if (in.w >= 0) {
      io = n;
      p[n++] = {in.w, POLLOUT, 0};
    }
    if (out.r >= 0) p[n++] = {out.r, POLLIN, 0};
    if (err.r >= 0) p[n++] = {err.r, POLLIN, 0};
    int pr = ::poll(p, static_cast<nfds_t>(n), static_cast<int>(std::min<long long>(left, 20)));
    if (pr < 0 && errno != EINTR) break;
    if (pr > 0 && io >= 0 && p[io].revents) {
      ssize_t w = ::write(in.w, input.data() + sent, input.size() - sent);
      if (w > 0) sent += static_cast<std::size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR) sent = input.size();  // the reader went away
      if (sent >= input.size()) {
        ::close(in.w);
        in.w = -1;
      }
    }
    if (out.r >= 0) drain(out.r, res.out);
    if (err.r >= 0) drain(err.r, res.err);
    pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) exited = true;
  }
  if (exited) {
    if (out.r >= 0) drain(out.r, res.out);
    if (err.r >= 0) drain(err.r, res.err);
  }
  in.close_all();
  out.close_all();
  err.close_all();
  if (!exited) {
    ::kill(-pid, SIGKILL);
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFEXITED(st))
    res.exit_code = WEXITSTATUS(st);
  else if (WIFSIGNALED(st))
    res.exit_code = 128 + WTERMSIG(st);
  return res;
}

bool plain_word(std::string_view w) {
  if (w.empty()) return false;
  return std::all_of(w.begin(), w.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./=:,@%+", c) != nullptr;
  });
}

std::string first_line(std::string_view s) {
  while (!s.empty() && (s.front() == '\n' || s.front() == '\r')) s.remove_prefix(1);
  auto nl = s.find('\n');
  std::string l(s.substr(0, nl));
  while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
  return l;
}

}  // namespace

std::string ssh_target::text() const {
  // Appends, not operator+ chains: GCC 12 reports a false -Wrestrict on those.
  std::string s;
  if (!user.empty()) s.append(user).append("@");
  const bool bracket = host.find(':') != std::string::npos;  // an IPv6 address reads back only in []
  if (bracket) s.append("[");
  s.append(host);
  if (bracket) s.append("]");
  if (port) s.append(":").append(std::to_string(port));
  return s;
}

result<ssh_target> parse_ssh_target(std::string_view s) {
  auto bad = [&](const std::string& why) {
    return make_error(fmt::format("ssh target '{}': {} (expected user@host or user@host:port)", s, why), 2);
  };
  ssh_target t;
  std::string_view rest = s;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    t.user = std::string(rest.substr(0, at));
    rest = rest.substr(at + 1);
    if (t.user.empty()) return bad("empty user");
    for (char c : t.user)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
        return bad("bad user name");
  }
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    t.host = std::string(rest.substr(1, close - 1));
    auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("text after ']'");
      port_text = after.substr(1);
    }
  } else {
    auto colon = rest.find(':');
    if (colon != std::string_view::npos && rest.find(':', colon + 1) == std::string_view::npos) {
      t.host = std::string(rest.substr(0, colon));
      port_text = rest.substr(colon + 1);
    } else {
      t.host = std::string(rest);  // a bare IPv6 address has several ':'
    }
  }
  if (t.host.empty()) return bad("empty host");
  if (t.host.front() == '-') return bad("a host may not start with '-'");
  for (char c : t.host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_'))
      return bad(fmt::format("bad character '{}' in the host", c));
  if (!port_text.empty() || (!t.host.empty() && !rest.empty() && rest.back() == ':')) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || p < 1 || p > 65535)
      return bad(fmt::format("port '{}' is not 1-65535", port_text));
    t.port = p;
  }
  return t;
}

std::string shell_quote(std::string_view word) {
  if (plain_word(word)) return std::string(word);
  std::string q = "'";
  for (char c : word) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

std::string describe_ssh_failure(std::string_view e) {
  auto has = [&](std::string_view what) { return e.find(what) != std::string_view::npos; };
  if (has("REMOTE HOST IDENTIFICATION HAS CHANGED"))
    return "its host key changed (the known_hosts entry does not match: a different machine, or a reinstall)";
  if (has("Host key verification failed") || has("No ED25519 host key is known") || has("host key is known"))
    return "host key verification failed (the host is not in known_hosts, or its key does not match)";
  if (has("Permission denied"))
    return "authentication failed (permission denied: is your public key in its authorized_keys?)";
  if (has("Connection refused")) return "connection refused (is sshd running there?)";
  if (has("No route to host")) return "no route to host";
  if (has("Network is unreachable")) return "network is unreachable";
  if (has("Connection timed out") || has("timed out")) return "connection timed out";
  if (has("Could not resolve hostname")) return "its host name does not resolve";
  if (has("Connection closed") || has("Connection reset")) return "the connection was closed";
  std::string l = first_line(e);
  return l;
}

std::string default_control_dir() {
  std::string d = fmt::format("/tmp/agifarm-ssh-{}", ::getuid());
  ::mkdir(d.c_str(), 0700);
  ::chmod(d.c_str(), 0700);
  return d;
}

ssh_shell::ssh_shell(ssh_settings s) : s_(std::move(s)) {}

std::vector<std::string> ssh_shell::client_argv(const ssh_target& t,
                                                const std::vector<std::string>& argv) const {
  std::vector<std::string> a{s_.ssh, "-T",
                             "-o",   "BatchMode=yes",
                             "-o",   fmt::format("ConnectTimeout={}", s_.connect_timeout_s),
                             "-o",   fmt::format("ServerAliveInterval={}", s_.alive_interval_s),
                             "-o",   fmt::format("ServerAliveCountMax={}", s_.alive_count_max),
                             "-o",   "LogLevel=ERROR"};
  if (!s_.control_dir.empty()) {
    // One master connection per (options, target): a connection made with other options (another
    // known_hosts, key or config) must never be reused, or its host check would be skipped.
    std::string opts;
    for (const auto& o : s_.options) opts += o + '\0';
    std::string dir = fmt::format("{}/{:016x}", s_.control_dir, std::hash<std::string>{}(opts));
    ::mkdir(dir.c_str(), 0700);
    a.insert(a.end(),
             {"-o", "ControlMaster=auto", "-o", "ControlPath=" + dir + "/%C", "-o", "ControlPersist=60"});
  }
  a.insert(a.end(), s_.options.begin(), s_.options.end());
  if (t.port) a.insert(a.end(), {"-p", std::to_string(t.port)});
  std::string dest;
  if (!t.user.empty()) dest.append(t.user).append("@");
  dest.append(t.host);
  a.push_back(std::move(dest));
  a.push_back("--");
  std::string cmd;
  for (const auto& w : argv) {
    if (!cmd.empty()) cmd.push_back(' ');
    cmd.append(shell_quote(w));
  }
  a.push_back(cmd);
  return a;
}

result<command_output> ssh_shell::run(const ssh_target& t, const std::vector<std::string>& argv,
                                      std::string_view input, std::chrono::milliseconds timeout) {
  bool timed_out = false;
  auto r = run_local(client_argv(t, argv), input, timeout, timed_out);
  if (!r) return make_error(fmt::format("ssh {}: {}", t.text(), r.err().message));
  if (timed_out)
    return make_error(
        fmt::format("ssh {}: no answer within {:.0f} s (the machine is down or its network is cut)", t.text(),
                    std::chrono::duration<double>(timeout).count()),
        k_exit_timed_out);
  if (r->exit_code == 127 && r->err.find("cannot run " + s_.ssh) != std::string::npos)
    return make_error(fmt::format("ssh {}: {}", t.text(), first_line(r->err)));
  if (r->exit_code == 255) {
    std::string why = describe_ssh_failure(r->err);
    return make_error(fmt::format("ssh {}: {}", t.text(), why.empty() ? "ssh failed (exit 255)" : why),
                      k_exit_connection_failed);
  }
  return std::move(*r);
}

}  // namespace agifarm::remote
