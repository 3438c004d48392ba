#include "gateway/scheduler.hpp"

#include <algorithm>

namespace agifarm::gateway {

scheduler::scheduler(const config& c) : queue_max_(c.queue.max), eject_after_(c.limits.eject_after_failures) {
  for (std::size_t pi = 0; pi < c.pools.size(); ++pi) {
    const auto& pc = c.pools[pi];
    pool p;
    p.name = pc.name;
    p.priority = pc.priority;
    p.slots = pc.slots_per_replica;
    p.on_demand = pc.on_demand;
    std::vector<std::string> names;
    for (const auto& rc : pc.replicas) {
      auto found = find_replica(rc.name);
      std::size_t idx;
      if (found) {
        idx = *found;
      } else {
        idx = replicas_.size();
        replicas_.push_back(replica{});
        replicas_.back().name = rc.name;
        replicas_.back().url = rc.url;
        replicas_.back().slots = 0;
      }
      replicas_[idx].slots = std::max(replicas_[idx].slots, pc.slots_per_replica);
      replicas_[idx].pools.push_back(pi);
      p.replicas.push_back(idx);
      names.push_back(rc.name);
    }
    p.policy = make_balancer(pc.policy, names);
    p.sticky = make_prefix_affinity(names);
    pools_.push_back(std::move(p));
    pools_by_priority_.push_back(pi);
  }
  std::stable_sort(pools_by_priority_.begin(), pools_by_priority_.end(),
                   [&](std::size_t a, std::size_t b) { return pools_[a].priority > pools_[b].priority; });
}

std::optional<std::size_t> scheduler::find_replica(const std::string& name) const {
  for (std::size_t i = 0; i < replicas_.size(); ++i)
    if (replicas_[i].name == name) return i;
  return std::nullopt;
}

bool scheduler::any_usable(const pool& p) const {
  for (auto r : p.replicas)
    if (usable(replicas_[r])) return true;
  return false;
}

std::optional<std::size_t> scheduler::place(pool& p, const pick_request& req,
                                            const std::vector<std::size_t>& excluded) {
  replica_view views[64];
  std::vector<replica_view> many;
  replica_view* v = views;
  if (p.replicas.size() > 64) {
    many.resize(p.replicas.size());
    v = many.data();
  }
  std::size_t n = 0;
  for (std::size_t local = 0; local < p.replicas.size(); ++local) {
    const replica& r = replicas_[p.replicas[local]];
    if (!usable(r)) continue;
    if (std::find(excluded.begin(), excluded.end(), p.replicas[local]) != excluded.end()) continue;
    v[n++] = replica_view{local, r.outstanding, r.slots};
  }
  if (n == 0) return std::nullopt;
  balancer& b = req.session ? *p.sticky : *p.policy;
  auto pick = b.choose(std::span<const replica_view>(v, n), req);
  if (!pick) return std::nullopt;
  return p.replicas[v[*pick].id];
}

acquire_result scheduler::acquire(std::size_t pi, const pick_request& req,
                                  const std::vector<std::size_t>& excluded, time_point now,
                                  time_point deadline, grant_callback cb) {
  return acquire_lazy(pi, req, excluded, now, deadline, [&cb] { return std::move(cb); });
}

acquire_result scheduler::acquire_lazy(std::size_t pi, const pick_request& req,
                                       const std::vector<std::size_t>& excluded, time_point now,
                                       time_point deadline, const std::function<grant_callback()>& make_cb) {
  std::lock_guard lock(mu_);
  pool& p = pools_.at(pi);
  acquire_result out;
  if (!any_usable(p)) {
    if (p.on_demand && excluded.empty()) {
      // Loaded on demand: wait in the queue while the owner starts it.
      if (static_cast<int>(p.queue.size()) >= queue_max_) {
        out.status = acquire_status::queue_full;
        return out;
      }
      out.status = acquire_status::queued;
      out.wants_load = true;
      out.ticket = next_ticket_++;
      p.queue.push_back(waiter{out.ticket, now, req, excluded, deadline, make_cb()});
      return out;
    }
    out.status = acquire_status::no_healthy;
    return out;
  }
  bool untried = false;
  for (auto r : p.replicas)
    if (usable(replicas_[r]) && std::find(excluded.begin(), excluded.end(), r) == excluded.end())
      untried = true;
  if (!untried) {
    out.status = acquire_status::exhausted;
    return out;
  }
  // Dispatch is eager (every freed slot goes to a waiter that can use it at once), so a slot this
  // request can take now is one no waiter wants: taking it does not jump the queue.
  if (auto r = place(p, req, excluded)) {
    replicas_[*r].outstanding++;
    replicas_[*r].last_used = now;
    out.status = acquire_status::granted;
    out.l = lease{pi, *r};
    return out;
  }
  if (static_cast<int>(p.queue.size()) >= queue_max_) {
    out.status = acquire_status::queue_full;
    return out;
  }
  out.status = acquire_status::queued;
  out.ticket = next_ticket_++;
  p.queue.push_back(waiter{out.ticket, now, req, excluded, deadline, make_cb()});
  return out;
}

bool scheduler::has_untried(std::size_t pi, const std::vector<std::size_t>& excluded) const {
  std::lock_guard lock(mu_);
  for (auto r : pools_.at(pi).replicas)
    if (usable(replicas_[r]) && std::find(excluded.begin(), excluded.end(), r) == excluded.end()) return true;
  return false;
}

bool scheduler::cancel(std::uint64_t ticket) {
  std::lock_guard lock(mu_);
  for (auto& p : pools_) {
    for (auto it = p.queue.begin(); it != p.queue.end(); ++it) {
      if (it->ticket == ticket) {
        p.queue.erase(it);
        return true;
      }
    }
  }
  return false;
}

void scheduler::dispatch(pending& out, time_point now) {
  for (auto pi : pools_by_priority_) {
    pool& p = pools_[pi];
    // FIFO among the waiters that can be placed: one waiting for a particular busy replica (affinity,
    // or one that excludes the free replica) does not block those behind it.
    for (auto it = p.queue.begin(); it != p.queue.end();) {
      auto r = place(p, it->req, it->excluded);
      if (!r) {
        ++it;
        continue;
      }
      replicas_[*r].outstanding++;
      replicas_[*r].last_used = now;
      out.emplace_back(std::move(it->cb), grant{grant_status::granted, lease{pi, *r}});
      it = p.queue.erase(it);
    }
  }
}

void scheduler::run(pending& p) {
  for (auto& [cb, g] : p)
    if (cb) cb(g);
}

bool scheduler::release(const lease& l, outcome o, time_point now) {
  pending todo;
  bool ejected_now = false;
  {
    std::lock_guard lock(mu_);
    replica& r = replicas_.at(l.replica);
    if (r.outstanding > 0) r.outstanding--;
    r.last_used = now;
    if (o == outcome::success) {
      r.consecutive_failures = 0;
    } else if (o == outcome::failure) {
      r.consecutive_failures++;
      if (!r.ejected && r.consecutive_failures >= eject_after_) {
        // Never eject more than half of any pool that lists this replica.
        bool allowed = true;
        for (auto pi : r.pools) {
          const pool& p = pools_[pi];
          std::size_t ejected = 0;
          for (auto ri : p.replicas) ejected += replicas_[ri].ejected ? 1 : 0;
          if ((ejected + 1) * 2 > p.replicas.size()) allowed = false;
        }
        if (allowed) {
          r.ejected = true;
          r.ejections++;
          ejected_now = true;
        }
      }
    }
    dispatch(todo, now);
  }
  run(todo);
  return ejected_now;
}

void scheduler::expire(time_point now) {
  pending todo;
  {
    std::lock_guard lock(mu_);
    for (auto& p : pools_) {
      bool healthy = any_usable(p);
      for (auto it = p.queue.begin(); it != p.queue.end();) {
        if (it->deadline <= now) {
          todo.emplace_back(std::move(it->cb),
                            grant{healthy ? grant_status::timed_out : grant_status::no_healthy, {}});
          it = p.queue.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  run(todo);
}

bool scheduler::set_ready(const std::string& name, bool ready, time_point now) {
  pending todo;
  {
    std::lock_guard lock(mu_);
    auto idx = find_replica(name);
    if (!idx) return false;
    replica& r = replicas_[*idx];
    r.ready = ready;
    if (ready) {
      r.ejected = false;  // the caller has checked it
      r.consecutive_failures = 0;
      r.last_used = now;  // a model just loaded counts as just used
    }
    dispatch(todo, now);
  }
  run(todo);
  return true;
}

void scheduler::probe_result(std::size_t ri, bool ok, time_point now) {
  pending todo;
  {
    std::lock_guard lock(mu_);
    replica& r = replicas_.at(ri);
    if (ok && r.ejected) {
      r.ejected = false;
      r.consecutive_failures = 0;
      dispatch(todo, now);
    }
  }
  run(todo);
}

bool scheduler::retire_if_idle(const std::vector<std::size_t>& rs) {
  std::lock_guard lock(mu_);
  for (auto ri : rs) {
    const replica& r = replicas_.at(ri);
    if (r.outstanding > 0) return false;
    for (auto pi : r.pools)
      if (!pools_[pi].queue.empty()) return false;
  }
  for (auto ri : rs) replicas_[ri].ready = false;
  return true;
}

void scheduler::refuse_waiters(std::size_t pi, const std::string& message) {
  pending todo;
  {
    std::lock_guard lock(mu_);
    pool& p = pools_.at(pi);
    p.refusal = message;
    for (auto& w : p.queue) todo.emplace_back(std::move(w.cb), grant{grant_status::refused, {}});
    p.queue.clear();
  }
  run(todo);
}

std::string scheduler::refusal(std::size_t pi) const {
  std::lock_guard lock(mu_);
  return pools_.at(pi).refusal;
}

std::vector<std::size_t> scheduler::ejected() const {
  std::lock_guard lock(mu_);
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < replicas_.size(); ++i)
    if (replicas_[i].ejected && replicas_[i].ready) out.push_back(i);
  return out;
}

std::vector<scheduler::replica_state> scheduler::replica_states() const {
  std::lock_guard lock(mu_);
  std::vector<replica_state> out;
  for (const auto& r : replicas_)
    out.push_back(
        {r.name, r.ready, r.ejected, r.outstanding, r.consecutive_failures, r.ejections, r.last_used});
  return out;
}

std::vector<scheduler::pool_state> scheduler::pool_states() const {
  std::lock_guard lock(mu_);
  std::vector<pool_state> out;
  for (const auto& p : pools_)
    out.push_back({p.name, p.queue.size(), p.queue.empty() ? time_point{} : p.queue.front().since});
  return out;
}

std::uint64_t scheduler::total_outstanding() const {
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  for (const auto& r : replicas_) n += static_cast<std::uint64_t>(r.outstanding);
  return n;
}

std::uint64_t scheduler::total_queued() const {
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  for (const auto& p : pools_) n += p.queue.size();
  return n;
}

}  // namespace agifarm::gateway
