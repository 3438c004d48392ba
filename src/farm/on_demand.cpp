#include "farm/on_demand.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>

#include "hw/hw.hpp"
#include "plan/devices.hpp"

namespace agifarm::farm {

using supervise::backend_state;

device_bytes backend_need(const plan::backend_spec& b) {
  device_bytes out;
  if (!b.predicted) return out;
  for (const auto& d : b.predicted->devices)
    if (d.total_bytes) out[d.name] += d.total_bytes;
  if (b.predicted->host.total_bytes) out["host"] += b.predicted->host.total_bytes;
  return out;
}

device_bytes local_capacity(const farm_file& f, std::vector<std::string>& notes) {
  device_bytes cap;
  auto cat = hw::load_default_catalogue();
  if (!cat) {
    notes.push_back("on demand: no hardware catalogue (" + cat.err().message + "); memory is not limited");
    return cap;
  }
  hw::node n;
  if (!f.inventory.empty()) {
    auto inv = hw::load_inventory(f.inventory, *cat);
    if (!inv || inv->nodes.empty()) {
      notes.push_back(fmt::format("on demand: inventory {}: {}; memory is not limited", f.inventory,
                                  inv ? "no nodes" : inv.err().message));
      return cap;
    }
    n = inv->nodes.front();
    if (const auto* local = inv->find_node("local")) n = *local;
  } else {
    auto d = hw::discover_local(hw::real_system(), *cat, {});
    if (!d) {
      notes.push_back("on demand: " + d.err().message + "; memory is not limited");
      return cap;
    }
    n = d->local;
  }
  if (n.ram_bytes) cap["host"] = n.ram_bytes;
  // named as the planner names them; capacity is the total VRAM (free memory changes as models load)
  const auto devices = plan::node_devices(n);
  for (std::size_t i = 0; i < n.gpus.size(); ++i)
    if (n.gpus[i].vram_bytes) cap[devices[i].name] = n.gpus[i].vram_bytes;
  return cap;
}

on_demand_manager::on_demand_manager(const plan::deployment& d, const farm_file& f, device_bytes capacity,
                                     std::function<void()> wake)
    : capacity_(std::move(capacity)), wake_(std::move(wake)) {
  opt_.hold = std::chrono::duration_cast<od_duration>(
      std::chrono::duration<double, std::milli>(f.on_demand.batch_ms));
  load_timeout_s_ = f.on_demand.load_timeout_s;
  for (const auto& p : d.pools) {
    entry e;
    e.m.name = p.name;
    const model_entry* me = find_model(f, p.name);
    if (me) {
      e.m.on_demand = me->on_demand;
      e.m.pinned = me->pin;
      e.m.priority = me->priority;
      e.m.ttl = std::chrono::duration_cast<od_duration>(std::chrono::duration<double>(me->ttl_s));
    }
    any_on_demand_ = any_on_demand_ || e.m.on_demand;
    e.m.phase = e.m.on_demand ? model_phase::unloaded : model_phase::loaded;
    e.shown = e.m.on_demand ? "unloaded" : "loaded";
    // Its llama-servers and, transitively, what they depend on (rpc servers of a shard).
    std::vector<std::string> todo = p.backends;
    while (!todo.empty()) {
      std::string name = todo.back();
      todo.pop_back();
      if (std::find(e.backends.begin(), e.backends.end(), name) != e.backends.end()) continue;
      e.backends.push_back(name);
      for (const auto& b : d.backends)
        if (b.name == name) {
          for (const auto& [dev, bytes] : backend_need(b)) e.m.need[dev] += bytes;
          todo.insert(todo.end(), b.depends_on.begin(), b.depends_on.end());
        }
    }
    e.replicas = p.backends;
    for (const auto& r : e.replicas) {
      int slots = 1;
      for (const auto& b : d.backends)
        if (b.name == r) slots = std::max(1, b.slots);
      e.slots.push_back(slots);
    }
    e.saved.assign(e.replicas.size(), {});
    if (!e.m.on_demand) e.loads = 1;
    models_.push_back(std::move(e));
  }
  pools_.resize(models_.size());
}

std::vector<std::string> on_demand_manager::on_demand_backends() const {
  std::vector<std::string> out;
  for (const auto& e : models_)
    if (e.m.on_demand) out.insert(out.end(), e.backends.begin(), e.backends.end());
  return out;
}

std::vector<std::string> on_demand_manager::never_fit() const {
  std::vector<od_model> v;
  for (const auto& e : models_) v.push_back(e.m);
  return farm::never_fit(v, capacity_);
}

void on_demand_manager::configure(gateway::config& c) {
  for (auto& p : c.pools)
    for (std::size_t i = 0; i < models_.size(); ++i) {
      const auto& e = models_[i];
      bool mine = std::any_of(p.replicas.begin(), p.replicas.end(), [&](const gateway::replica_config& r) {
        return std::find(e.replicas.begin(), e.replicas.end(), r.name) != e.replicas.end();
      });
      if (!mine) continue;
      pools_[i].push_back(p.name);
      if (e.m.on_demand) {
        p.on_demand = true;
        p.load_timeout_ms = static_cast<int>(load_timeout_s_ * 1000);
      }
    }
  c.on_demand_wanted = [this](const std::string& pool) { wanted(pool); };
}

void on_demand_manager::wanted(const std::string& pool) {
  {
    std::lock_guard lk(mu_);
    if (!wanted_.insert(pool).second) return;  // the owner has not stepped since: it is awake already
  }
  if (wake_) wake_();
}

bool on_demand_manager::all_in(const supervise::supervisor& sup, const entry& e,
                               std::initializer_list<backend_state> states, bool llama_only) const {
  for (const auto& name : llama_only ? e.replicas : e.backends) {
    auto i = sup.find(name);
    if (!i) continue;
    const auto& b = sup.backends()[*i];
    if (std::find(states.begin(), states.end(), b.state) == states.end()) return false;
    if ((b.state == backend_state::stopped || b.state == backend_state::failed) && b.pid != 0) return false;
  }
  return true;
}

void on_demand_manager::save_slots_in(const std::string& dir, plan::deployment& d) {
  slot_dir_ = dir;
  for (const auto& e : models_) {
    if (!e.m.on_demand) continue;
    for (auto& b : d.backends)
      if (b.kind == plan::backend_kind::llama_server &&
          std::find(e.replicas.begin(), e.replicas.end(), b.name) != e.replicas.end())
        b.args.insert(b.args.end(), {"--slot-save-path", dir + "/"});
  }
}

bool on_demand_manager::serving(const std::string& replica) const {
  for (const auto& e : models_)
    if (std::find(e.replicas.begin(), e.replicas.end(), replica) != e.replicas.end())
      return !e.m.on_demand || e.m.phase == model_phase::loaded;
  return true;
}

namespace {
std::string slot_file(const std::string& replica, int slot) {
  return fmt::format("{}-slot{}.bin", replica, slot);
}
}  // namespace

void on_demand_manager::save(const supervise::supervisor& sup, entry& e,
                             const std::function<void(const std::string&)>& say) {
  if (slot_dir_.empty() || e.m.phase != model_phase::loaded) return;
  int total = 0;
  for (std::size_t r = 0; r < e.replicas.size(); ++r) {
    e.saved[r].assign(static_cast<std::size_t>(e.slots[r]), 0);
    auto i = sup.find(e.replicas[r]);
    if (!i || sup.backends()[*i].state != backend_state::ready) continue;
    const auto& b = sup.backends()[*i];
    for (int s = 0; s < e.slots[r]; ++s) {
      auto a = supervise::http_post(b.host, b.port, fmt::format("/slots/{}?action=save", s),
                                    fmt::format(R"({{"filename":"{}"}})", slot_file(b.name, s)),
                                    std::chrono::seconds(30));
      if (a.status != 200) continue;
      boost::system::error_code ec;
      auto v = boost::json::parse(a.body, ec);
      if (ec || !v.is_object()) continue;
      if (auto* n = v.as_object().if_contains("n_saved"); n && n->is_int64())
        e.saved[r][static_cast<std::size_t>(s)] = static_cast<int>(n->as_int64());
      total += e.saved[r][static_cast<std::size_t>(s)];
    }
  }
  e.saved_tokens += total;
  if (total > 0) say(fmt::format("  model {}: saved {} tokens of prompt cache", e.m.name, total));
}

void on_demand_manager::restore(const supervise::supervisor& sup, entry& e,
                                const std::function<void(const std::string&)>& say) {
  if (slot_dir_.empty()) return;
  int total = 0;
  for (std::size_t r = 0; r < e.replicas.size(); ++r) {
    auto i = sup.find(e.replicas[r]);
    if (!i) continue;
    const auto& b = sup.backends()[*i];
    for (std::size_t s = 0; s < e.saved[r].size(); ++s) {
      if (e.saved[r][s] < k_restore_min_tokens) continue;  // cheaper to recompute
      auto a =
          supervise::http_post(b.host, b.port, fmt::format("/slots/{}?action=restore", s),
                               fmt::format(R"({{"filename":"{}"}})", slot_file(b.name, static_cast<int>(s))),
                               std::chrono::seconds(30));
      if (a.status != 200) continue;
      boost::system::error_code ec;
      auto v = boost::json::parse(a.body, ec);
      if (!ec && v.is_object())
        if (auto* n = v.as_object().if_contains("n_restored"); n && n->is_int64())
          total += static_cast<int>(n->as_int64());
    }
    e.saved[r].clear();
  }
  e.restored_tokens += total;
  if (total > 0) say(fmt::format("  model {}: restored {} tokens of prompt cache", e.m.name, total));
}

void on_demand_manager::stop(supervise::supervisor& sup, entry& e, const std::string& why,
                             const std::function<void(const std::string&)>& say) {
  save(sup, e, say);
  // Dependents (the llama-servers) first, then what they use.
  for (const auto& r : e.replicas) (void)sup.stop_backend(r, why);
  for (const auto& b : e.backends) (void)sup.stop_backend(b, why);
  e.m.phase = model_phase::stopping;
}

od_time on_demand_manager::step(supervise::supervisor& sup, gateway::server* gw, od_time now,
                                const std::function<void(const std::string&)>& say) {
  {
    std::lock_guard lk(mu_);
    wanted_.clear();
  }
  od_time next = now + std::chrono::hours(24);
  if (!active()) return next;
  // What the gateway sees: requests in flight and queued, last use.
  gateway::snapshot snap;
  if (gw) snap = gw->stats();
  for (std::size_t i = 0; i < models_.size(); ++i) {
    auto& e = models_[i];
    e.m.in_flight = 0;
    e.m.queued = 0;
    for (const auto& r : snap.replicas)
      if (std::find(e.replicas.begin(), e.replicas.end(), r.name) != e.replicas.end()) {
        e.m.in_flight += r.outstanding;
        e.m.last_used = std::max(e.m.last_used, r.last_used);
      }
    bool first = true;
    for (const auto& p : snap.pools)
      if (p.queued > 0 && std::find(pools_[i].begin(), pools_[i].end(), p.name) != pools_[i].end()) {
        e.m.queued += static_cast<int>(p.queued);
        if (first || p.oldest_wait < e.m.waiting_since) e.m.waiting_since = p.oldest_wait;
        first = false;
      }
  }
  // Phases from the supervisor.
  for (auto& e : models_) {
    if (!e.m.on_demand) continue;
    if (e.m.phase == model_phase::loading) {
      if (all_in(sup, e, {backend_state::ready}, true)) {
        restore(sup, e, say);  // before the gateway sends it requests (serving() is false until loaded)
        e.m.phase = model_phase::loaded;
        e.shown = "loaded";
        e.reason.clear();
        e.loads++;
        e.last_load_s = std::chrono::duration<double>(now - e.load_started).count();
        e.total_load_s += e.last_load_s;
        e.m.last_used = std::max(e.m.last_used, now);
        say(fmt::format("  model {}: loaded in {:.1f} s (load #{})", e.m.name, e.last_load_s, e.loads));
      } else {
        std::string failed;
        for (const auto& name : e.backends)
          if (auto i = sup.find(name); i && sup.backends()[*i].state == backend_state::failed)
            failed = fmt::format("backend {} failed: {}", name, sup.backends()[*i].reason);
        if (failed.empty() && std::chrono::duration<double>(now - e.load_started).count() > load_timeout_s_)
          failed = fmt::format("not ready within the load timeout of {:.0f} s", load_timeout_s_);
        if (!failed.empty()) {
          e.reason = fmt::format("model '{}' could not load: {}", e.m.name, failed);
          say("  " + e.reason);
          if (gw) gw->refuse_queued(pools_[&e - models_.data()], e.reason);
          stop(sup, e, "load failed", say);
          e.shown = "stopping";
        }
      }
    }
    if (e.m.phase == model_phase::stopping &&
        all_in(sup, e, {backend_state::stopped, backend_state::failed}, false)) {
      e.m.phase = model_phase::unloaded;
      if (e.shown == "stopping") e.shown = "unloaded";
    }
  }
  std::vector<od_model> view;
  for (const auto& e : models_) view.push_back(e.m);
  // Idle past their ttl: retire (atomically, only if still idle) and stop.
  for (auto i : expired(view, now)) {
    auto& e = models_[i];
    if (gw && !gw->retire_if_idle(e.replicas)) continue;
    say(fmt::format("  model {}: idle for its ttl ({:.0f} s); stopping", e.m.name,
                    std::chrono::duration<double>(e.m.ttl).count()));
    stop(sup, e, "idle for its ttl", say);
    e.unloads++;
    e.shown = "stopping";
    view[i] = e.m;
  }
  bool waiting = false;
  for (std::size_t round = 0; round < models_.size(); ++round) {
    auto t = next_to_load(view);
    if (!t) break;
    auto& e = models_[*t];
    auto d = decide_load(view, *t, capacity_, now, opt_);
    if (d.verdict == od_verdict::start) {
      say(fmt::format("  model {}: loading on demand ({} request{} waiting)", e.m.name, e.m.queued,
                      e.m.queued == 1 ? "" : "s"));
      for (const auto& b : e.backends)
        if (auto st = sup.start_backend(b); !st) say("  " + st.err().message);
      e.m.phase = model_phase::loading;
      e.shown = "loading";
      e.reason.clear();
      e.load_started = now;
      view[*t] = e.m;
      continue;  // others may fit too
    }
    if (d.verdict == od_verdict::evict) {
      bool all = true;
      for (auto v : d.evict) {
        auto& victim = models_[v];
        if (gw && !gw->retire_if_idle(victim.replicas)) {  // a request slipped in: decide again soon
          all = false;
          continue;
        }
        say(fmt::format("  model {}: evicted to make room for {}", victim.m.name, e.m.name));
        stop(sup, victim, "evicted for " + e.m.name, say);
        victim.evictions++;
        victim.shown = "evicted";
        view[v] = victim.m;
      }
      (void)all;
      e.reason = fmt::format("waiting for {} to stop",
                             d.evict.size() == 1 ? models_[d.evict[0]].m.name : "its victims");
      waiting = true;
      break;  // it starts once they are gone (their exits wake us)
    }
    if (d.verdict == od_verdict::wait) {
      if (e.reason != d.reason) say("  " + d.reason);
      e.reason = d.reason;
      waiting = true;
      break;  // first come, first loaded: nothing overtakes it
    }
    if (d.verdict == od_verdict::refuse) {
      say("  refused: " + d.reason);
      e.reason = d.reason;
      if (gw) gw->refuse_queued(pools_[*t], d.reason);
    }
    view[*t].queued = 0;  // refused (or nothing to do): look at the next one
  }
  // Wake again for the next ttl expiry, and soon while a load waits (busy victims finish requests
  // without telling us).
  if (waiting) next = std::min(next, now + std::chrono::milliseconds(100));
  for (const auto& e : models_)
    if (e.m.on_demand && e.m.phase == model_phase::loaded && e.m.ttl.count() > 0) {
      od_time at = e.m.last_used + e.m.ttl;
      next = std::min(next, at > now ? at : now + std::chrono::milliseconds(100));
    }
  return next;
}

std::vector<model_record> on_demand_manager::records() const {
  std::vector<model_record> out;
  if (!active()) return out;
  for (const auto& e : models_)
    out.push_back({e.m.name, e.shown, e.m.on_demand, e.m.pinned, e.loads, e.evictions, e.unloads,
                   e.last_load_s, e.total_load_s, e.reason, e.saved_tokens, e.restored_tokens});
  return out;
}

std::vector<gateway::model_status> on_demand_manager::statuses() const {
  std::vector<gateway::model_status> out;
  if (!active()) return out;
  for (const auto& e : models_)
    out.push_back({e.m.name, e.shown, e.m.on_demand, static_cast<std::uint64_t>(e.loads),
                   static_cast<std::uint64_t>(e.evictions), static_cast<std::uint64_t>(e.unloads),
                   e.last_load_s, e.total_load_s});
  return out;
}

}  // namespace agifarm::farm
