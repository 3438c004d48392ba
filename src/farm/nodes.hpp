// nodes: the other machines of a farm, driven over SSH (remote/remote.hpp). The machine `up` runs on is
// the controller: it runs the gateway (and its own node's backends under its supervisor); every other
// node runs a node daemon — `agifarm node up`, the same supervisor, detached, in its own state dir —
// that the controller starts, polls, restarts and stops with one `ssh ... agifarm node VERB` each.
//
//   split_farm()     which backends run where: a node with `ssh:` in the inventory is remote, the one
//                    node without it (or "local") is this machine. Remote backends are rewritten for
//                    their node: llama-servers bind the node's address and require the farm's backend
//                    key (LLAMA_API_KEY in their env, never argv), depends_on across nodes is dropped
//                    from the node's part (the controller orders the nodes instead: those a shard's
//                    llama-server depends on start first).
//   node_fleet       check (agifarm + llama.cpp present, versions), start in order, poll, restart a node
//                    whose daemon is gone, stop. One mutex guards each node's status; poll(i) for
//                    different nodes may run on different threads at once.
//   replica_view()   what the gateway should do with each llama-server of the farm given the local
//                    supervisor's and the nodes' states: ready or not, at which URL, and why not.
//
// Node protocol (all JSON on stdout; the node's part of the deployment on stdin for `up`):
//   agifarm node info   [--llama-bin D]                          -> {"agifarm_version", "llama_version", ...}
//   agifarm node up     --name N [--state-dir D] [--llama-bin L]  -> exit 0 once its backends started
//   agifarm node status --name N [--state-dir D]                  -> the node's `status --json`
//   agifarm node down   --name N [--state-dir D]
//   agifarm node logs   --name N [--state-dir D] BACKEND [-n L]
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "farm/state.hpp"
#include "hw/hw.hpp"
#include "plan/deployment.hpp"
#include "remote/remote.hpp"

namespace agifarm::farm {

inline constexpr const char* k_agifarm_version = "0.1.0";

struct remote_node {
  std::string name;
  remote::ssh_target target;
  std::string address;
  std::string agifarm = "agifarm";
  std::string llama_bin;  // "" = the node's default
  std::string state_dir;  // "" = the node's default for this node name
  // [agifarm, node, verb, --name, N, (--state-dir D), (--llama-bin L)]
  std::vector<std::string> argv(const std::string& verb) const;
};

struct farm_split {
  plan::deployment all;            // the whole deployment, remote backends rewritten for their node
  plan::deployment local;          // this machine's backends (no pools: the gateway takes them from `all`)
  std::vector<remote_node> nodes;  // remote nodes in start order (dependencies first)
  std::map<std::string, plan::deployment> per_node;  // node name -> its part, as its daemon runs it
};

// Errors name the node or backend: a node not in the inventory, two nodes without `ssh:` (which one is
// this machine?), a remote backend bound to 0.0.0.0 / a public address without allow_public.
result<farm_split> split_farm(const plan::deployment& d, const hw::inventory& inv,
                              const std::string& backend_key, bool allow_public = false);

// A random 256-bit key as hex (from /dev/urandom).
std::string make_backend_key();

struct remote_backend {
  backend_record record;  // as the node reported it (node = the remote node's name)
  bool alive = false;
};

struct node_status {
  std::string name;
  std::string state = "starting";  // starting | up | unreachable | restarting | down | failed
  std::int64_t since_wall = 0;
  std::string error;
  int restarts = 0;
  std::string agifarm_version, llama_version;
  std::vector<backend_record> backends;  // the node's backends as last reported (kept while unreachable)
};

struct fleet_options {
  std::chrono::milliseconds info_timeout{20000};
  std::chrono::milliseconds start_timeout{900000};  // `node up` returns once its backends started
  std::chrono::milliseconds poll_timeout{8000};
  int unreachable_after =
      2;  // polls timing out in a row before a node's replicas leave their pools (a failed connection: 1)
  std::chrono::milliseconds stop_timeout{90000};
  std::chrono::seconds restart_backoff_initial{2};
  std::chrono::seconds restart_backoff_cap{60};
};

class node_fleet {
 public:
  using say_fn = std::function<void(const std::string&)>;
  using wall_clock = std::function<std::int64_t()>;  // unix seconds
  node_fleet(std::vector<remote_node> nodes, std::map<std::string, plan::deployment> parts,
             remote::remote_shell& sh, fleet_options o = {}, wall_clock wall = {});

  // `agifarm node info` on every node (in parallel): present, same agifarm version, llama.cpp found.
  // Every problem is reported (one line per node); an error if any.
  status check(const say_fn& say);
  // Starts every node's daemon in order; a failure stops the nodes started before it (nothing left).
  status start(const say_fn& say);
  // One poll of node i: its status over SSH. Restarts its daemon when it runs no farm (after a
  // backoff). Returns true when anything the controller shows changed.
  bool poll(std::size_t i);
  // `agifarm node down` on every node in reverse start order (in parallel within the call).
  void stop(const say_fn& say);

  std::size_t size() const { return nodes_.size(); }
  const remote_node& node(std::size_t i) const { return nodes_[i]; }
  std::vector<node_status> snapshot() const;

 private:
  struct entry {
    mutable std::mutex mu;
    node_status st;
    std::int64_t next_restart = 0;
    std::int64_t backoff_s = 0;
    int failures = 0;  // polls failed in a row
  };
  result<std::string> start_node(std::size_t i);
  void set_state(entry& e, const std::string& state, const std::string& error);

  std::vector<remote_node> nodes_;
  std::map<std::string, plan::deployment> parts_;
  remote::remote_shell& sh_;
  fleet_options o_;
  wall_clock wall_;
  std::vector<std::unique_ptr<entry>> entries_;
};

// What the gateway should do with one llama-server of the farm.
struct replica_state {
  bool ready = false;
  std::string url;     // "http://host:port" ("" = not known yet)
  std::string reason;  // why not ready ("node work unreachable since ...", "rpc server X down")
};
// local: the local supervisor's backends (name, host, port, state); nodes: the fleet's snapshot.
std::map<std::string, replica_state> replica_view(const plan::deployment& all,
                                                  const std::vector<backend_record>& local,
                                                  const std::vector<node_status>& nodes);

// Parses `agifarm node info` output; errors name the node.
struct node_info {
  std::string agifarm_version;
  std::string llama_bin;
  bool llama_server = false, rpc_server = false;
  std::string llama_version;
  std::string hostname;
};
result<node_info> parse_node_info(std::string_view json_text, const std::string& node);
// What `agifarm node info` prints on this machine.
std::string node_info_json(const std::string& llama_bin);

}  // namespace agifarm::farm
