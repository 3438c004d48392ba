// remote: commands on other machines of a farm over OpenSSH. agifarm has no cluster protocol of its
// own: every remote action (discover, start a node's daemon, read its state, stop it, read a log) is one
// `ssh user@host -- agifarm ...` with the user's own keys, host checking and ssh config.
//
// ssh_shell runs the system's `ssh` with BatchMode (never a password prompt), a connect timeout,
// keep-alives that notice a dead link within seconds, and one multiplexed connection per node
// (ControlMaster) so polling a node costs one round trip, not one handshake. Each run() has a deadline
// after which the ssh client is killed and the call is an error; it never hangs.
//
// Errors name the node's target and say what failed in words (host key verification, connection
// refused, no route, authentication, a timeout). A remote command that ran and exited non-zero is not
// an error: its exit code and output come back in command_output.
//
// Thread-safety: ssh_shell::run may be called from several threads at once (one process per call).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::remote {

// user@host[:port] | host | user@[v6addr]:port. Empty user: ssh's default (the config's or $USER).
struct ssh_target {
  std::string user;
  std::string host;
  int port = 0;              // 0: ssh's default (22 or the config's)
  std::string text() const;  // as written: "root@10.0.0.2:2222"
};
result<ssh_target> parse_ssh_target(std::string_view s);  // errors quote the text

struct command_output {
  int exit_code = 0;  // the remote command's exit status
  std::string out;
  std::string err;
};

// error::exit_code of a failed run: the connection itself failed (ssh's exit 255: refused, host key,
// keep-alives unanswered) or nothing answered before the deadline (a busy machine looks like this too).
inline constexpr int k_exit_connection_failed = 255;
inline constexpr int k_exit_timed_out = 124;

class remote_shell {
 public:
  virtual ~remote_shell() = default;
  // Runs argv on the target (each word quoted for the remote shell), input on its stdin.
  virtual result<command_output> run(const ssh_target& t, const std::vector<std::string>& argv,
                                     std::string_view input, std::chrono::milliseconds timeout) = 0;
};

struct ssh_settings {
  std::string ssh = "ssh";           // the client program
  std::vector<std::string> options;  // extra client arguments (e.g. -F file, -i key, -o X=Y)
  std::string control_dir;           // ControlMaster sockets; "" = no multiplexing
  int connect_timeout_s = 5;
  int alive_interval_s = 1;  // ServerAliveInterval; x alive_count_max = dead-link detection
  int alive_count_max = 3;
};

class ssh_shell final : public remote_shell {
 public:
  explicit ssh_shell(ssh_settings s);
  result<command_output> run(const ssh_target& t, const std::vector<std::string>& argv,
                             std::string_view input, std::chrono::milliseconds timeout) override;
  // The full client argv run() uses (for tests and for `--dry-run` style messages).
  std::vector<std::string> client_argv(const ssh_target& t, const std::vector<std::string>& argv) const;

 private:
  ssh_settings s_;
};

// A word quoted for a POSIX shell ('...' with ' escaped); plain words stay as they are.
std::string shell_quote(std::string_view word);
// ssh's stderr turned into the one line a user needs ("host key verification failed", ...); "" when
// nothing is recognised.
std::string describe_ssh_failure(std::string_view ssh_stderr);
// The default place for ControlMaster sockets: /tmp/agifarm-ssh-<uid> (short: unix socket paths are
// limited to ~100 bytes), created 0700.
std::string default_control_dir();

}  // namespace agifarm::remote
