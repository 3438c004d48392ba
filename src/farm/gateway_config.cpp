#include "farm/gateway_config.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace agifarm::farm {

using gateway::balance;
using gateway::config;
using gateway::pool_config;

result<config> gateway_config_from_deployment(const plan::deployment& d,
                                              const std::map<std::string, std::string>& backend_urls,
                                              config base) {
  base.pools.clear();
  for (const auto& ps : d.pools) {
    pool_config p;
    p.name = ps.name;
    p.aliases = ps.aliases;
    p.priority = ps.priority;
    p.policy = ps.balance == plan::balance_policy::prefix_affinity ? balance::prefix_affinity
                                                                   : balance::least_outstanding;
    int slots = 0;
    for (const auto& bname : ps.backends) {
      auto it =
          std::find_if(d.backends.begin(), d.backends.end(), [&](const auto& b) { return b.name == bname; });
      if (it == d.backends.end())
        return make_error(fmt::format("pool '{}': backend '{}' is not in the deployment", ps.name, bname));
      if (it->kind != plan::backend_kind::llama_server)
        return make_error(
            fmt::format("pool '{}': backend '{}' is an rpc server, not a llama-server", ps.name, bname));
      auto url = backend_urls.find(bname);
      if (url == backend_urls.end())
        return make_error(fmt::format("pool '{}': no URL resolved for backend '{}'", ps.name, bname));
      // A backend started with a key (a remote node's llama-server) is sent the same key.
      auto key = it->env.find(std::string(plan::k_api_key_env));
      p.replicas.push_back({bname, url->second, key == it->env.end() ? std::string() : key->second});
      slots = slots == 0 ? it->slots : std::min(slots, it->slots);
    }
    p.slots_per_replica = std::max(1, slots);
    // Roles of different priority on one model get a pool each over the same replicas, so a "fast"
    // request waits behind no queue of "think" requests (the scheduler hands freed slots of shared
    // replicas to the highest-priority pool first). Requests by model name queue at the lowest.
    int lowest = 0, highest = 0;
    for (std::size_t i = 0; i < ps.aliases.size(); ++i) {
      int r = plan::role_priority(ps.aliases[i]);
      lowest = i == 0 ? r : std::min(lowest, r);
      highest = i == 0 ? r : std::max(highest, r);
    }
    if (ps.aliases.size() > 1 && lowest != highest) {
      std::vector<std::string> aliases = std::move(p.aliases);
      p.aliases.clear();
      p.priority = lowest;
      for (const auto& a : aliases) {
        if (plan::role_priority(a) == lowest) {
          p.aliases.push_back(a);
          continue;
        }
        pool_config role = p;
        role.name = a;
        role.aliases.clear();
        role.priority = plan::role_priority(a);
        base.pools.push_back(std::move(role));
      }
    }
    base.pools.push_back(std::move(p));
  }
  if (auto v = gateway::validate(base); !v) return v.err();
  return base;
}

}  // namespace agifarm::farm
