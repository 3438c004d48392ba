// runner: `agifarm up / status / down / logs` — a farm on this machine: the deployment's backends under
// the supervisor, the gateway in front, the state directory (farm/state.hpp) for other terminals.
//
// run_up, foreground:  lock the state dir (a running farm is reported, never twinned) -> clean up what
// a crashed earlier run left -> get the deployment (plan file | farm file | embedded demo) -> allocate
// ports -> start backends (dependencies first) showing llama-server's load progress -> start the gateway
// once every backend became ready or crashed at least once (a crash loop does not hold the farm back)
// and one is ready -> print endpoint, roles, memory, speed
// and snippets -> run until SIGINT/SIGTERM/SIGHUP -> stop the gateway (drain), the backends (SIGTERM,
// then SIGKILL), remove the state files.
// run_up with detach: the same in a daemon (setsid, output to <state_dir>/agifarm.log); the calling
// process prints the daemon's start-up output and exits 0 once the farm is up (non-zero if it is not).
//
// run_up blocks SIGINT/SIGTERM/SIGHUP/SIGCHLD/SIGUSR1 in the calling thread and waits for them with
// sigtimedwait; call it from the main thread before any other thread exists. Not reentrant.
#pragma once

#include <iosfwd>
#include <string>

namespace agifarm::farm {

struct up_options {
  std::string farm_file;  // "" = embedded default (tiny demo model, two replicas)
  std::string plan_file;  // --plan
  bool detach = false;
  std::string state_dir;  // "" = farm file's, else default_state_dir()
  std::string llama_bin;  // "" = farm file's, else default_llama_bin()
  std::string listen;     // "" = farm file's, else 127.0.0.1:8080
  // A node daemon of a multi-node farm (`agifarm node up`, farm/nodes.hpp): no gateway, the plan's
  // part for this node from stdin (plan_file "-"), state in node_state_dir(node_name) by default.
  bool node_mode = false;
  std::string node_name;
};

// The default state directory of a node daemon: default_state_dir()/node-<name>.
std::string node_state_dir(const std::string& node_name);

int run_up(const up_options& o, std::ostream& out, std::ostream& err);

struct control_options {
  std::string state_dir;  // "" = default_state_dir()
  std::string farm_file;  // if given, its state_dir is used
  std::string node_name;  // a node daemon's state (node_state_dir) unless state_dir is given
  bool brief = false;     // status: skip asking each backend for its requests in flight
};

int run_status(const control_options& o, bool json, std::ostream& out, std::ostream& err);
int run_down(const control_options& o, int timeout_s, std::ostream& out, std::ostream& err);
// name: a backend, "agifarm" (the daemon's own log), or NODE/NAME for a remote node's backend (over ssh).
int run_logs(const control_options& o, const std::string& name, int lines, std::ostream& out,
             std::ostream& err);

}  // namespace agifarm::farm
