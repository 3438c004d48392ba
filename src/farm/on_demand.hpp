// on_demand: drives the on-demand models of a farm (farm file `on_demand: true`) on top of the
// supervisor and the gateway, with the decisions of on_demand_policy.hpp.
//
//   gateway worker thread: a request queues for an on-demand pool with no ready replica
//       -> wanted(pool) (thread-safe; records it and wakes the owner)
//   owner (the runner's main thread), step():
//       read the gateway's in-flight/queued/last-used per model and the supervisor's backend states
//       -> phases (loading -> loaded when every llama-server of the model is ready: load count/time;
//          stopping -> unloaded/evicted when every process is gone; a load that failed refuses its queue)
//       -> ttl: idle on-demand models are retired (gateway, atomically: never one with a request in
//          flight or queued) and stopped
//       -> loads: the next model with queued requests (priority, then oldest wait): start / evict the
//          victims (retired first, as above) / wait / refuse its queue with the policy's reason
//
// Not thread-safe except wanted(); step() and the accessors run on the owner's thread.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "farm/farm_file.hpp"
#include "farm/on_demand_policy.hpp"
#include "farm/state.hpp"
#include "gateway/gateway.hpp"
#include "plan/deployment.hpp"
#include "supervise/supervisor.hpp"

namespace agifarm::farm {

// Predicted bytes per device of a backend ("host", and the prediction's device names).
device_bytes backend_need(const plan::backend_spec& b);

class on_demand_manager {
 public:
  // d: the farm's deployment; on_demand / pinned / ttl / priority per model from the farm file.
  on_demand_manager(const plan::deployment& d, const farm_file& f, device_bytes capacity,
                    std::function<void()> wake);

  bool active() const { return !models_.empty() && any_on_demand_; }
  // Backends the supervisor must not start by itself.
  std::vector<std::string> on_demand_backends() const;
  // Models that can never load (the always-on ones alone too big, or one too big beside them).
  std::vector<std::string> never_fit() const;
  const device_bytes& capacity() const { return capacity_; }
  // Sets each gateway pool's on_demand flag and load timeout (pools serving an on-demand model).
  void configure(gateway::config& c);

  void wanted(const std::string& gateway_pool);  // thread-safe

  // Prompt-cache save/restore (farm file on_demand.save_slots): gives the on-demand llama-servers of
  // `d` `--slot-save-path dir/`; an evicted or unloaded model's slots are saved before it stops and
  // restored after it loads again, before requests reach it, when a slot held at least
  // k_restore_min_tokens (fewer are faster to recompute than to read back).
  static constexpr int k_restore_min_tokens = 64;
  void save_slots_in(const std::string& dir, plan::deployment& d);
  // Whether the gateway may send requests to this replica: not while its model loads (or restores).
  bool serving(const std::string& replica) const;

  // Returns the next instant it wants to be stepped again (ttl and batch-window expiries).
  od_time step(supervise::supervisor& sup, gateway::server* gw, od_time now,
               const std::function<void(const std::string&)>& say);

  std::vector<model_record> records() const;
  std::vector<gateway::model_status> statuses() const;

 private:
  struct entry {
    od_model m;
    std::vector<std::string> backends;  // every backend of the model, dependencies included
    std::vector<std::string> replicas;  // its llama-servers in the gateway
    std::string shown;                  // loaded | loading | unloaded | evicted | stopping
    std::int64_t loads = 0, evictions = 0, unloads = 0;
    double last_load_s = 0, total_load_s = 0;
    od_time load_started{};
    std::string reason;
    std::vector<int> slots;               // per replica: its -np
    std::vector<std::vector<int>> saved;  // per replica, per slot: tokens saved at its last stop
    std::int64_t saved_tokens = 0, restored_tokens = 0;
  };
  void save(const supervise::supervisor& sup, entry& e, const std::function<void(const std::string&)>& say);
  void restore(const supervise::supervisor& sup, entry& e,
               const std::function<void(const std::string&)>& say);
  bool all_in(const supervise::supervisor& sup, const entry& e,
              std::initializer_list<supervise::backend_state> states, bool llama_only) const;
  void stop(supervise::supervisor& sup, entry& e, const std::string& why,
            const std::function<void(const std::string&)>& say);

  std::vector<entry> models_;
  device_bytes capacity_;
  od_options opt_;
  double load_timeout_s_ = 600;
  bool any_on_demand_ = false;
  std::function<void()> wake_;
  std::mutex mu_;
  std::set<std::string> wanted_;                 // gateway pools asked for since the last step
  std::vector<std::vector<std::string>> pools_;  // per model: gateway pool names (set by configure)
  std::string slot_dir_;                         // "" = no save/restore
};

// Capacity of this machine for on-demand decisions: the farm file's inventory (its first node: RAM as
// "host", GPUs as CUDA<i>/ROCm<i>), else this machine as discovered. Empty when neither is known.
device_bytes local_capacity(const farm_file& f, std::vector<std::string>& notes);

}  // namespace agifarm::farm
