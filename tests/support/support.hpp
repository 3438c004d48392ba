// Test support shared by integration tests: where llama.cpp and agifarm live, synthesizing the tiny
// models once per build, starting real processes with their output in a log, free loopback ports,
// and waiting on a condition with a deadline (never a bare sleep). Not for production code.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace agifarm::test {

std::string llama_bin();    // directory with llama-server etc. ($AGIFARM_LLAMA_BIN overrides)
std::string llama_src();    // llama.cpp source tree
std::string agifarm_cli();  // path of the agifarm binary under test
std::string work_dir();     // a per-build scratch dir (build/test-work), created on demand
std::string temp_dir(const std::string& name);  // fresh empty dir under work_dir()

// Path of a tiny model synthesized once per build dir ("qwen3" or "qwen3moe"); extra synth flags
// make a different file (cached by flags).
std::string tiny_model(const std::string& arch = "qwen3", const std::vector<std::string>& extra_flags = {});

// Runs a command to completion; returns exit status and combined stdout+stderr.
struct run_result {
  int exit_code = -1;
  std::string output;
};
run_result run(const std::vector<std::string>& argv,
               std::chrono::seconds timeout = std::chrono::seconds(120));

// A child process in its own process group, killed (SIGKILL to the group) on destruction.
class child {
 public:
  child() = default;
  child(const std::vector<std::string>& argv, const std::string& log_path);
  child(child&& o) noexcept;
  child& operator=(child&& o) noexcept;
  ~child();
  pid_t pid() const { return pid_; }
  bool running();      // reaps if exited
  void kill(int sig);  // to the whole group
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  std::string log() const;  // the log file's contents
  const std::string& log_path() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
  std::optional<int> status_;
};

int free_port();
// A listening socket on 127.0.0.1:port (to hold a port as another program would); -1 if taken.
int listen_on(int port);
// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port);
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(50));

// Minimal blocking HTTP on loopback for assertions (Boost.Beast).
struct http_response {
  int status = 0;  // 0: connection failed
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};
http_response http_request(int port, const std::string& method, const std::string& target,
                           const std::string& body = {},
                           const std::vector<std::pair<std::string, std::string>>& headers = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Starts llama-server on `model` at a free port and waits until /health answers 200.
struct llama_server {
  child proc;
  int port = 0;
};
llama_server start_llama_server(const std::string& model, const std::vector<std::string>& extra_args = {},
                                std::chrono::seconds ready_timeout = std::chrono::seconds(120));

}  // namespace agifarm::test
