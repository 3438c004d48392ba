// scheduler: the gateway's shared state of replicas, slots, queues and replica health. All methods are
// thread-safe (one mutex, held for a few microseconds); time is passed in (`now`), so tests drive it
// with a fake clock. Callbacks are never invoked under the lock.
//
// A request gets a lease on one replica slot (acquire), or waits in its pool's bounded queue; a waiter's
// callback is invoked exactly once (granted, timed out) unless cancel() returns true first. Freed slots
// go to waiters of the highest-priority pool first (pools may share replicas), FIFO within a pool.
//
// Replica health (per replica, shared by every pool that lists it):
//
//        set_ready(false)              failures >= eject_after_failures and the ejection keeps
//   +-----------------------+          every pool at most half ejected
//   v                       |     +-------------------------------------+
// not_ready --set_ready(true)-> healthy                                  v
//                                 ^-------- probe_result(ok) ------- ejected (active /health probes)
//
// Only ready and healthy replicas receive new requests; leases on a replica that leaves continue.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gateway/balancer.hpp"
#include "gateway/gateway.hpp"

namespace agifarm::gateway {

using time_point = std::chrono::steady_clock::time_point;

struct lease {
  std::size_t pool = 0;
  std::size_t replica = 0;  // global replica index (see replica_name)
};

enum class grant_status { granted, timed_out, no_healthy, refused };  // refused: see refusal()
struct grant {
  grant_status status = grant_status::timed_out;
  lease l;
};
using grant_callback = std::function<void(grant)>;

enum class acquire_status { granted, queued, queue_full, no_healthy, exhausted };
struct acquire_result {
  acquire_status status = acquire_status::no_healthy;
  lease l;                   // when granted
  std::uint64_t ticket = 0;  // when queued
  bool wants_load = false;   // queued for an on-demand pool with no ready replica: ask for a load
};

enum class outcome { success, failure, neutral };  // neutral: client went away, says nothing of the replica

class scheduler {
 public:
  explicit scheduler(const config& c);

  // excluded: global replica indices this request already tried. With a free slot on a candidate the
  // lease is granted now; else, if the queue has room, the request is queued until `deadline` and `cb`
  // will be called. no_healthy: the pool has no ready, healthy replica; exhausted: all were tried.
  acquire_result acquire(std::size_t pool, const pick_request& req, const std::vector<std::size_t>& excluded,
                         time_point now, time_point deadline, grant_callback cb);
  // The same, with the callback made by `make_cb` only when the request is queued: most requests are
  // granted at once, and a callback holding a weak_ptr does not fit std::function's inline storage (a
  // heap allocation per request for nothing).
  acquire_result acquire_lazy(std::size_t pool, const pick_request& req,
                              const std::vector<std::size_t>& excluded, time_point now, time_point deadline,
                              const std::function<grant_callback()>& make_cb);
  // True if the pool has a ready, healthy replica not in `excluded` (a retry has somewhere to go).
  bool has_untried(std::size_t pool, const std::vector<std::size_t>& excluded) const;
  // Removes a queued waiter; true if it was still queued (its callback will not be called).
  bool cancel(std::uint64_t ticket);
  // Ends a lease. failure counts toward ejection; returns true if this ejected the replica.
  bool release(const lease& l, outcome o, time_point now);
  // Calls back (timed_out, or no_healthy when the pool has no usable replica) every waiter whose
  // deadline is <= now.
  void expire(time_point now);

  bool set_ready(const std::string& replica_name, bool ready, time_point now);  // false: unknown name
  // On demand: sets the replicas not ready if none has a lease and no pool listing one has a waiter.
  bool retire_if_idle(const std::vector<std::size_t>& replicas);
  // Calls back every waiter of the pool with `refused`; refusal(pool) says why.
  void refuse_waiters(std::size_t pool, const std::string& message);
  std::string refusal(std::size_t pool) const;
  bool on_demand(std::size_t pool) const { return pools_[pool].on_demand; }
  void probe_result(std::size_t replica, bool ok, time_point now);
  std::vector<std::size_t> ejected() const;

  std::size_t replica_count() const { return replicas_.size(); }
  std::size_t pool_count() const { return pools_.size(); }
  const std::string& replica_name(std::size_t r) const { return replicas_[r].name; }
  // The URL is read only by server::start() and changed only by server::set_replica_url().
  const std::string& replica_url(std::size_t r) const { return replicas_[r].url; }
  void set_replica_url(std::size_t r, const std::string& url) {
    std::lock_guard lock(mu_);
    replicas_[r].url = url;
  }
  const std::string& pool_name(std::size_t p) const { return pools_[p].name; }
  std::optional<std::size_t> find_replica(const std::string& name) const;

  struct replica_state {
    std::string name;
    bool ready = true;
    bool ejected = false;
    int outstanding = 0;
    int consecutive_failures = 0;
    std::uint64_t ejections = 0;
    time_point last_used{};
  };
  struct pool_state {
    std::string name;
    std::size_t queued = 0;
    time_point oldest_wait{};
  };
  std::vector<replica_state> replica_states() const;
  std::vector<pool_state> pool_states() const;
  std::uint64_t total_outstanding() const;
  std::uint64_t total_queued() const;

 private:
  struct replica {
    std::string name, url;
    int slots = 1;  // max over the pools that list it
    bool ready = true;
    bool ejected = false;
    int outstanding = 0;
    int consecutive_failures = 0;
    std::uint64_t ejections = 0;
    time_point last_used{};
    std::vector<std::size_t> pools;
  };
  struct waiter {
    std::uint64_t ticket;
    time_point since;
    pick_request req;
    std::vector<std::size_t> excluded;
    time_point deadline;
    grant_callback cb;
  };
  struct pool {
    std::string name;
    int priority = 0;
    int slots = 1;
    std::vector<std::size_t> replicas;  // global indices, pool-local order
    std::unique_ptr<balancer> policy;
    std::unique_ptr<balancer> sticky;  // for session keys, whatever the policy
    std::deque<waiter> queue;
    bool on_demand = false;
    std::string refusal;
  };
  using pending = std::vector<std::pair<grant_callback, grant>>;

  bool usable(const replica& r) const { return r.ready && !r.ejected; }
  bool any_usable(const pool& p) const;
  // Picks a replica for req in pool p (under lock); nullopt when none has a free slot.
  std::optional<std::size_t> place(pool& p, const pick_request& req,
                                   const std::vector<std::size_t>& excluded);
  void dispatch(pending& out, time_point now);  // hands freed slots to waiters, priority order
  static void run(pending& p);

  mutable std::mutex mu_;
  std::vector<replica> replicas_;
  std::vector<pool> pools_;
  std::vector<std::size_t> pools_by_priority_;
  int queue_max_;
  int eject_after_;
  std::uint64_t next_ticket_ = 1;
};

}  // namespace agifarm::gateway
