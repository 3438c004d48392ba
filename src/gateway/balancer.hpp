// balancer: picks one replica of a pool for a request. One file per algorithm:
//   least_outstanding.cpp  fewest outstanding requests per slot, ties rotated
//   prefix_affinity.cpp    bounded-load consistent hashing on the request's affinity key (prompt prefix
//                          or session id): the key's home replica unless its load exceeds
//                          ceil(k_load_factor * mean load), then the next one clockwise on the ring
//
// The caller passes only candidates (ready, healthy, not already tried by this request). choose()
// returns the position in `candidates` of a replica with a free slot (outstanding < slots), or nullopt
// when the request should wait in the pool's queue: every candidate is full, or (prefix_affinity) the
// key's replica is full but within the load bound, so waiting for it beats recomputing the prefix.
// Not thread-safe: the scheduler calls it under its lock. Balancers keep no per-request state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gateway/gateway.hpp"

namespace agifarm::gateway {

struct replica_view {
  std::size_t id = 0;  // pool-local replica index (stable)
  int outstanding = 0;
  int slots = 1;
};

struct pick_request {
  bool has_key = false;
  std::uint64_t key = 0;  // affinity hash (prefix or session)
  bool session = false;   // key is a session id: the pool uses consistent hashing whatever its policy
};

class balancer {
 public:
  virtual ~balancer() = default;
  virtual std::optional<std::size_t> choose(std::span<const replica_view> candidates,
                                            const pick_request& req) = 0;
};

std::unique_ptr<balancer> make_least_outstanding();
// names: the pool's replica names in pool-local index order (hash ring positions derive from them).
// load_factor 1.5: a replica may carry up to 1.5x the mean load before its keys spill (prefill of a
// long prefix usually costs more than waiting for a slot on the replica that caches it).
std::unique_ptr<balancer> make_prefix_affinity(const std::vector<std::string>& names,
                                               double load_factor = 1.5);
std::unique_ptr<balancer> make_balancer(balance policy, const std::vector<std::string>& names);

}  // namespace agifarm::gateway
