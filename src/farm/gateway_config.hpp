// gateway_config: builds a gateway::config from the planner's deployment (plan/deployment.hpp), for
// the farm runner; the gateway itself knows nothing of plans. Pools come from deployment.pools; each
// pool's replicas are its backends, at the URLs the runner resolved (backend name -> "http://host:port").
// slots_per_replica is the backend's -np. Priorities are the plan's: a pool keeps its pool_spec's
// priority, and a pool whose roles differ in plan::role_priority is split: each higher-priority role
// becomes a pool of its own over the same replicas (per-role queue priority); the model name and the
// lowest roles stay. Pure function; thread-safe.
#pragma once

#include <map>
#include <string>

#include "common/result.hpp"
#include "gateway/gateway.hpp"
#include "plan/deployment.hpp"

namespace agifarm::farm {

// base: listen address, keys, limits and queue settings to keep; its pools are replaced.
// Errors name the pool and the backend (unknown backend, no URL for it, an rpc-server in a pool).
result<gateway::config> gateway_config_from_deployment(const plan::deployment& d,
                                                       const std::map<std::string, std::string>& backend_urls,
                                                       gateway::config base);

}  // namespace agifarm::farm
