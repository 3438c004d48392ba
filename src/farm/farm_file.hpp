// farm_file: the user's description of a farm (YAML), as read by `agifarm up farm.yaml`.
//
//   models:                      # name -> GGUF file (relative paths are relative to the farm file)
//     qwen3-8b: ~/models/Qwen3-8B-Q4_K_M.gguf
//     qwen3-30b: {file: /m/Qwen3-30B-A3B-Q4_K_M.gguf, replicas: 1, args: ["-ngl", "99"]}
//     coder: {file: /m/coder.gguf, on_demand: true, ttl: 10m, pin: false, priority: 1}
//                                # on_demand: started on its first request, stopped after `ttl` idle
//                                # (default 10m; 0 = only when memory is needed), evicted for another
//                                # model unless `pin`; priority orders contended loads and queues
//   roles:                       # role -> model, context per agent, concurrent agents
//     fast:  {model: qwen3-8b, ctx: 8192, agents: 4}
//     think: {model: qwen3-30b, ctx: 32768, agents: 1}
//   strategy: replica            # or per model: {qwen3-30b: expert_offload}; default: the planner decides
//   inventory: machines.yaml     # optional hardware inventory for the planner
//   llama_bin: ~/llama.cpp/build/bin   # default $AGIFARM_LLAMA_BIN, else the agifarm cache build
//   state_dir: ~/.local/state/agifarm  # default $AGIFARM_STATE_DIR, else ~/.local/state/agifarm
//   ssh_options: ["-F", "~/.ssh/farm_config"]  # extra ssh arguments for the inventory's remote nodes
//   allow_public_bind: false          # a remote backend may bind 0.0.0.0 only with true (docs/multinode.md)
//   on_demand: {batch_ms: 2000, load_timeout_s: 600, save_slots: true}   # settings of on-demand models
//                                # (docs/on-demand.md): a model idle for less than batch_ms is not
//                                # evicted (requests for others batch up meanwhile; 0 = off)
//   supervisor: {start_timeout_s: 600, max_failures: 5, failure_window_s: 600, backoff_initial_s: 1,
//                backoff_cap_s: 300, healthy_reset_s: 600, health_interval_s: 2, probe_interval_s: 30,
//                probe_timeout_s: 60, stop_timeout_s: 10, log_max_mb: 16, log_keep: 3}
//   # the gateway's keys (docs/gateway.md), read by gateway::config_from_yaml from the same text:
//   listen: 127.0.0.1:8080
//   threads: 0
//   session_header: x-session-id
//   api_keys: [{name: me, key_env: AGIFARM_KEY}]
//   gateway: {...}
//
// Unknown keys are errors. Every error names file:line:column and the key. `pools` is refused: in a
// farm the pools come from the plan (roles become aliases of their model's pool).
//
// Pure functions; thread-safe. No networking or processes, so the fuzz build links it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "gateway/gateway.hpp"

namespace agifarm::farm {

struct model_entry {
  std::string name;
  std::string file;               // absolute after load (relative to the farm file's folder, ~ expanded)
  int replicas = 1;               // used when no planner decides (see docs/running.md)
  std::vector<std::string> args;  // extra llama-server arguments appended to the generated ones
  bool on_demand = false;         // started on its first request, not by `up`
  double ttl_s = 600;             // on demand: stopped after this long idle; 0 = only to make room
  bool pin = false;               // on demand: never evicted to make room (ttl still applies)
  int priority = 0;               // its pool's priority (contended slots, contended loads)
};

// The farm-wide settings of on-demand models (`on_demand:` at the top level).
struct on_demand_settings {
  double batch_ms = 2000;       // anti-thrash: a model used within this long is not evicted yet
  double load_timeout_s = 600;  // a request waits this long for its model to load
  bool save_slots = true;       // save an evicted llama-server's prompt cache, restore it on reload
};

struct role_entry {
  std::string name;
  std::string model;
  int ctx = 4096;  // context per agent (tokens)
  int agents = 1;  // concurrent agents = parallel slots
};

// Optional overrides of supervise::supervisor_options (seconds; absent = the supervisor's default).
struct supervisor_settings {
  std::optional<double> start_timeout_s, failure_window_s, backoff_initial_s, backoff_cap_s, healthy_reset_s,
      health_interval_s, probe_interval_s, probe_timeout_s, stop_timeout_s;
  std::optional<int> max_failures, log_keep;
  std::optional<double> log_max_mb;
};

struct farm_file {
  std::string path;                 // as given ("" for text parsed without a file)
  std::vector<model_entry> models;  // in file order
  std::vector<role_entry> roles;    // in file order
  std::string strategy;             // for all models; "" = planner decides
  std::map<std::string, std::string> strategy_per_model;
  std::string inventory;
  std::string llama_bin;                 // "" = default
  std::string state_dir;                 // "" = default
  std::vector<std::string> ssh_options;  // extra `ssh` arguments for every node (e.g. ["-F", "ssh_config"])
  bool allow_public_bind = false;        // let a remote backend bind 0.0.0.0 (a warning is printed)
  supervisor_settings supervisor;
  on_demand_settings on_demand;
  gateway::config gateway;  // listen, keys, limits (pools empty: they come from the plan)
};

inline constexpr const char* k_strategies[] = {"replica", "shard", "shard_rpc", "expert_offload", "hybrid"};

// base_dir: folder that relative model paths are resolved against ("" = leave them relative).
// home: value used for a leading "~" ("" = leave it).
result<farm_file> parse_farm_file(std::string_view text, const std::string& file_name,
                                  const std::string& base_dir = "", const std::string& home = "");
result<farm_file> load_farm_file(
    const std::string& path);  // reads, resolves paths against its folder and $HOME

const model_entry* find_model(const farm_file& f, std::string_view name);
bool has_on_demand(const farm_file& f);

// "90", "90s", "1.5m", "2h", "500ms" -> seconds; nullopt when not a duration >= 0.
std::optional<double> parse_duration_s(std::string_view text);

}  // namespace agifarm::farm
