// on_demand_policy: the decisions behind models loaded on demand (farm file `on_demand: true`), as pure
// functions of a snapshot of the farm's models, so they are unit- and property-tested without processes.
//
// A model's phase, as the runner drives it:
//
//                first request (decide_load: start)        its backends ready
//   unloaded ------------------------------------> loading ---------------> loaded
//      ^                                                                      |
//      |   backends exited            evicted (decide_load of another model)  |
//      +----------------- stopping <------------------------------------------+
//                                     or idle for its ttl (expired)
//
// Memory is the planner's prediction (plan::backend_prediction) summed over the model's backends, per
// device ("host", "CUDA0", ...). A model counts against its devices from `loading` until its processes
// are gone (`stopping` included), so a start never overlaps the memory of a model still shutting down.
//
// decide_load(target) for an unloaded model:
//   - fits next to what holds memory now            -> start
//   - fits once the models already stopping are gone -> wait
//   - else stop the fewest loaded models that free enough on exactly the devices that are short; only
//     on-demand, unpinned models with no request in flight or queued, unused for `hold` (anti-thrash:
//     requests for the target batch up meanwhile); among equally few: lowest priority, then least
//     recently used                                   -> evict them (ask again: start once they are gone)
//   - else if stopping busy/held/loading on-demand models too would make room -> wait (ask again)
//   - else                                            -> refuse, naming the models that would have to go
// Pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace agifarm::farm {

using od_time = std::chrono::steady_clock::time_point;
using od_duration = std::chrono::steady_clock::duration;
using device_bytes = std::map<std::string, std::uint64_t>;  // device -> bytes

enum class model_phase { unloaded, loading, loaded, stopping };
const char* to_string(model_phase p);

struct od_model {
  std::string name;
  bool on_demand = false;  // an always-on model is never stopped by the policy
  bool pinned = false;     // never evicted (its ttl still applies)
  int priority = 0;        // lower is evicted first; higher is loaded first
  od_duration ttl{};       // idle this long -> stopped; 0 = never for idleness
  device_bytes need;       // predicted bytes per device, all its backends
  model_phase phase = model_phase::unloaded;
  int in_flight = 0;        // requests holding a slot of one of its backends
  int queued = 0;           // requests waiting for it
  od_time last_used{};      // last request start or end, or when it became loaded
  od_time waiting_since{};  // its oldest queued request (meaningful when queued > 0)
};

struct od_options {
  od_duration hold{};  // a model used within this long is not evicted yet (batching); 0 = off
};

enum class od_verdict { start, evict, wait, refuse, nothing };
const char* to_string(od_verdict v);

struct od_decision {
  od_verdict verdict = od_verdict::nothing;
  std::vector<std::size_t> evict;  // evict: stop these now (indices into the models); the target starts later
  std::string reason;              // wait / refuse: why, naming models, devices and sizes
};

// Bytes held per device: the models loading, loaded or stopping.
device_bytes held_bytes(const std::vector<od_model>& models);
// Devices where `need` does not fit beside `held`: device -> bytes missing. Devices absent from
// `capacity` are not limited.
device_bytes shortfall(const device_bytes& held, const device_bytes& need, const device_bytes& capacity);

od_decision decide_load(const std::vector<od_model>& models, std::size_t target, const device_bytes& capacity,
                        od_time now, const od_options& o);

// The unloaded model to consider next: it has queued requests; highest priority, then the oldest wait.
std::optional<std::size_t> next_to_load(const std::vector<od_model>& models);

// Loaded on-demand models idle (nothing in flight or queued) for at least their ttl.
std::vector<std::size_t> expired(const std::vector<od_model>& models, od_time now);

// Models that can never load beside the always-on ones (or at all): one line each, naming sizes.
std::vector<std::string> never_fit(const std::vector<od_model>& models, const device_bytes& capacity);

std::string mib(std::uint64_t bytes);  // "123.4 MiB"

}  // namespace agifarm::farm
