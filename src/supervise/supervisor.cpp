#include "supervise/supervisor.hpp"

#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace agifarm::supervise {

std::string to_string(backend_state s) {
  switch (s) {
    case backend_state::waiting:
      return "waiting";
    case backend_state::starting:
      return "starting";
    case backend_state::ready:
      return "ready";
    case backend_state::backoff:
      return "backoff";
    case backend_state::stopping:
      return "stopping";
    case backend_state::failed:
      return "failed";
    case backend_state::stopped:
      return "stopped";
  }
  return "?";
}

namespace {
double seconds(duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

supervisor::supervisor(plan::deployment d, supervisor_options o, clock& c, process_launcher& l, prober& p,
                       file_system& f, port_allocator& ports, supervisor_events ev)
    : d_(std::move(d)),
      o_(std::move(o)),
      clock_(c),
      launcher_(l),
      prober_(p),
      files_(f),
      ports_(ports),
      ev_(std::move(ev)) {}

status supervisor::prepare() {
  if (prepared_) return make_error("supervisor: prepare() called twice");
  // Unique names, known dependencies.
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < d_.backends.size(); ++i) {
    const auto& b = d_.backends[i];
    if (b.name.empty()) return make_error(fmt::format("deployment.backends[{}]: empty name", i), 2);
    if (!index.emplace(b.name, i).second)
      return make_error(fmt::format("backend '{}' is listed twice", b.name), 2);
  }
  for (const auto& b : d_.backends)
    for (const auto& dep : b.depends_on) {
      if (!index.count(dep))
        return make_error(fmt::format("backend '{}' depends on unknown backend '{}'", b.name, dep), 2);
      if (dep == b.name) return make_error(fmt::format("backend '{}' depends on itself", b.name), 2);
    }
  // Topological order (Kahn), stable: dependencies first.
  std::vector<plan::backend_spec> ordered;
  std::set<std::string> placed;
  while (ordered.size() < d_.backends.size()) {
    bool progress = false;
    for (const auto& b : d_.backends) {
      if (placed.count(b.name)) continue;
      if (std::all_of(b.depends_on.begin(), b.depends_on.end(),
                      [&](auto& x) { return placed.count(x) > 0; })) {
        ordered.push_back(b);
        placed.insert(b.name);
        progress = true;
      }
    }
    if (!progress) {
      std::string cyc;
      for (const auto& b : d_.backends)
        if (!placed.count(b.name)) cyc += (cyc.empty() ? "" : ", ") + b.name;
      return make_error(fmt::format("backends depend on each other in a cycle: {}", cyc), 2);
    }
  }
  d_.backends = std::move(ordered);
  index.clear();
  for (std::size_t i = 0; i < d_.backends.size(); ++i) index[d_.backends[i].name] = i;

  status_.assign(d_.backends.size(), {});
  slots_.assign(d_.backends.size(), {});
  std::set<std::pair<std::string, int>> taken;
  for (std::size_t i = 0; i < d_.backends.size(); ++i) {
    auto& b = d_.backends[i];
    auto& st = status_[i];
    st.name = b.name;
    st.kind = b.kind;
    st.host = b.host.empty() ? "127.0.0.1" : b.host;
    st.log_path = o_.log_dir.empty() ? std::string() : fmt::format("{}/{}.log", o_.log_dir, b.name);
    for (const auto& dep : b.depends_on) {
      slots_[i].deps.push_back(index[dep]);
      slots_[index[dep]].dependents.push_back(i);
    }
    slots_[i].backoff = o_.backoff_initial;
    if (std::find(o_.on_demand.begin(), o_.on_demand.end(), b.name) != o_.on_demand.end())
      st.state = backend_state::stopped;
    if (b.port != 0) {
      if (taken.count({st.host, b.port}))
        return make_error(fmt::format("backend '{}': port {} is given to two backends", b.name, b.port), 2);
      if (!ports_.is_free(st.host, b.port))
        return make_error(
            fmt::format("backend '{}': port {} on {} is already in use", b.name, b.port, st.host));
      st.port = b.port;
    } else {
      // Ask until we get a port no other backend of this farm holds.
      for (int tries = 0; tries < 100 && st.port == 0; ++tries) {
        auto p = ports_.allocate(st.host);
        if (!p) return make_error(fmt::format("backend '{}': {}", b.name, p.err().message));
        if (!taken.count({st.host, *p})) st.port = *p;
      }
      if (st.port == 0)
        return make_error(fmt::format("backend '{}': no free port found on {}", b.name, st.host));
    }
    taken.insert({st.host, st.port});
  }
  prepared_ = true;
  next_log_check_ = clock_.now() + o_.log_check_interval;
  return status::success();
}

void supervisor::changed(std::size_t i) {
  if (ev_.on_change) ev_.on_change(status_[i]);
}

void supervisor::set_state(std::size_t i, backend_state s) {
  status_[i].state = s;
  changed(i);
}

bool supervisor::running(std::size_t i) const {
  auto s = status_[i].state;
  return s == backend_state::starting || s == backend_state::ready || s == backend_state::stopping;
}

bool supervisor::deps_ready(std::size_t i) const {
  return std::all_of(slots_[i].deps.begin(), slots_[i].deps.end(),
                     [&](std::size_t d) { return status_[d].state == backend_state::ready; });
}

bool supervisor::has_live_dependent(std::size_t i) const {
  return std::any_of(slots_[i].dependents.begin(), slots_[i].dependents.end(),
                     [&](std::size_t d) { return running(d); });
}

bool supervisor::all_stopped() const {
  return std::all_of(status_.begin(), status_.end(), [](const backend_status& s) {
    return (s.state == backend_state::stopped || s.state == backend_state::failed) && s.pid == 0;
  });
}

bool supervisor::all_settled() const {
  return std::all_of(status_.begin(), status_.end(), [](const backend_status& s) {
    return s.state == backend_state::ready || s.state == backend_state::failed ||
           (s.state == backend_state::stopped && s.pid == 0);
  });
}

std::optional<std::size_t> supervisor::find(const std::string& name) const {
  for (std::size_t i = 0; i < status_.size(); ++i)
    if (status_[i].name == name) return i;
  return std::nullopt;
}

status supervisor::start_backend(const std::string& name) {
  auto i = find(name);
  if (!i) return make_error(fmt::format("start: no backend named '{}'", name));
  if (shutting_down_) return make_error(fmt::format("start {}: the farm is stopping", name));
  auto& st = status_[*i];
  if (st.state != backend_state::stopped && st.state != backend_state::failed) return status::success();
  if (st.pid != 0) return make_error(fmt::format("start {}: its previous process has not exited yet", name));
  auto& s = slots_[*i];
  s.failures.clear();
  s.backoff = o_.backoff_initial;
  st.failures = 0;
  st.reason.clear();
  set_state(*i, backend_state::waiting);
  advance(*i, clock_.now());
  return status::success();
}

status supervisor::stop_backend(const std::string& name, const std::string& reason) {
  auto i = find(name);
  if (!i) return make_error(fmt::format("stop: no backend named '{}'", name));
  auto& st = status_[*i];
  switch (st.state) {
    case backend_state::waiting:
    case backend_state::backoff:
      st.reason = reason;
      set_state(*i, backend_state::stopped);
      break;
    case backend_state::starting:
    case backend_state::ready:
      kill_for(*i, after_stop::stopped, reason, clock_.now());
      st.reason = reason;
      changed(*i);
      break;
    default:
      break;  // stopping, stopped, failed
  }
  return status::success();
}

void supervisor::stop_all() {
  shutting_down_ = true;
  auto now = clock_.now();
  // Dependents first: walk in reverse topological order; advance() stops the rest as dependents go.
  for (std::size_t k = status_.size(); k-- > 0;) advance(k, now);
}

time_point supervisor::step() {
  auto now = clock_.now();
  for (const auto& e : launcher_.reap()) {
    for (std::size_t i = 0; i < status_.size(); ++i)
      if (status_[i].pid == e.pid && e.pid != 0) {
        handle_exit(i, e, now);
        break;
      }
  }
  for (const auto& r : prober_.poll()) {
    for (std::size_t i = 0; i < status_.size(); ++i)
      if (status_[i].name == r.backend) {
        handle_probe(i, r, now);
        break;
      }
  }
  if (shutting_down_) {
    for (std::size_t k = status_.size(); k-- > 0;) advance(k, now);
  } else {
    for (std::size_t i = 0; i < status_.size(); ++i) advance(i, now);
  }
  if (now >= next_log_check_) {
    for (const auto& st : status_)
      if (!st.log_path.empty()) files_.rotate_if_larger(st.log_path, o_.log_max_bytes, o_.log_keep);
    next_log_check_ = now + o_.log_check_interval;
  }

  time_point next = next_log_check_;
  auto consider = [&](time_point t) {
    if (t > now && t < next) next = t;
  };
  for (std::size_t i = 0; i < status_.size(); ++i) {
    const auto& s = slots_[i];
    switch (status_[i].state) {
      case backend_state::backoff:
        consider(status_[i].next_start);
        break;
      case backend_state::starting:
        consider(s.start_deadline);
        if (!s.health_in_flight) consider(s.next_health);
        if (ev_.on_progress) consider(s.next_progress);
        break;
      case backend_state::ready:
        if (!s.health_in_flight) consider(s.next_health);
        if (!s.probe_in_flight && o_.probe_interval.count() > 0 &&
            status_[i].kind == plan::backend_kind::llama_server)
          consider(s.next_probe);
        break;
      case backend_state::stopping:
        if (!s.killed) consider(s.stop_deadline);
        break;
      default:
        break;
    }
  }
  return next;
}

void supervisor::advance(std::size_t i, time_point now) {
  auto& st = status_[i];
  auto& s = slots_[i];
  switch (st.state) {
    case backend_state::waiting:
      if (shutting_down_) {
        set_state(i, backend_state::stopped);
        break;
      }
      for (std::size_t d : s.deps)
        if (status_[d].state == backend_state::failed) {
          fail(i, fmt::format("dependency '{}' failed", status_[d].name));
          return;
        }
      if (deps_ready(i)) spawn(i, now);
      break;
    case backend_state::backoff:
      if (shutting_down_) {
        set_state(i, backend_state::stopped);
        break;
      }
      if (now >= st.next_start) {
        if (deps_ready(i))
          spawn(i, now);
        else
          set_state(i, backend_state::waiting);
      }
      break;
    case backend_state::starting:
    case backend_state::ready: {
      if (shutting_down_) {
        if (!has_live_dependent(i)) kill_for(i, after_stop::stopped, "farm stopping", now);
        break;
      }
      const bool is_rpc = st.kind == plan::backend_kind::rpc_server;
      if (st.state == backend_state::starting) {
        if (now >= s.start_deadline) {
          kill_for(i, after_stop::crash,
                   fmt::format("not ready within the start timeout of {:.0f} s", seconds(o_.start_timeout)),
                   now);
          break;
        }
        if (ev_.on_progress && now >= s.next_progress && !st.log_path.empty()) {
          auto t = files_.tail(st.log_path, 1);
          if (!t.empty() && t.back() != s.last_progress) {
            s.last_progress = t.back();
            ev_.on_progress(st.name, t.back());
          }
          s.next_progress = now + o_.progress_interval;
        }
      }
      if (!s.health_in_flight && now >= s.next_health) {
        prober_.start({st.name,
                       is_rpc ? probe_kind::tcp : probe_kind::health,
                       st.host,
                       st.port,
                       o_.health_timeout,
                       s.gen,
                       {}});
        s.health_in_flight = true;
        s.next_health = now + (st.state == backend_state::starting ? o_.health_interval_starting
                                                                   : o_.health_interval_ready);
      }
      if (st.state == backend_state::ready && !is_rpc && o_.probe_interval.count() > 0 &&
          !s.probe_in_flight && now >= s.next_probe) {
        auto key = d_.backends[i].env.find(std::string(plan::k_api_key_env));
        prober_.start({st.name, probe_kind::completion, st.host, st.port, o_.probe_timeout, s.gen,
                       key == d_.backends[i].env.end() ? std::string() : key->second});
        s.probe_in_flight = true;
        s.next_probe = now + o_.probe_interval;
      }
      break;
    }
    case backend_state::stopping:
      if (!s.killed && now >= s.stop_deadline) {
        launcher_.signal_group(st.pid, SIGKILL);
        s.killed = true;
        if (s.then == after_stop::stopped)
          st.reason =
              fmt::format("did not stop within {:.0f} s of SIGTERM; killed", seconds(o_.stop_timeout));
      }
      break;
    case backend_state::failed:
    case backend_state::stopped:
      break;
  }
}

void supervisor::spawn(std::size_t i, time_point now) {
  auto& st = status_[i];
  auto& s = slots_[i];
  const auto& spec = d_.backends[i];
  if (s.spawns > 0) ++st.restarts;
  ++s.spawns;
  ++s.gen;
  s.health_in_flight = s.probe_in_flight = s.killed = false;
  s.health_fail = s.probe_fail = 0;
  s.last_progress.clear();
  if (!ports_.is_free(st.host, st.port)) {
    // Another program took the port while the backend was down. A port we chose ourselves, that no
    // other backend's arguments name (an RPC server's is in its users' --rpc), can simply move; the
    // owner learns the new port from on_change.
    std::optional<int> moved;
    if (spec.port == 0 && s.dependents.empty()) {
      for (int tries = 0; tries < 20 && !moved; ++tries) {
        auto p = ports_.allocate(st.host);
        if (!p) break;
        bool clash = false;
        for (std::size_t k = 0; k < status_.size(); ++k)
          if (k != i && status_[k].host == st.host && status_[k].port == *p) clash = true;
        if (!clash) moved = *p;
      }
    }
    if (!moved) {
      record_failure(i, fmt::format("port {} on {} is in use by another process", st.port, st.host), now,
                     false);
      return;
    }
    st.reason =
        fmt::format("port {} on {} was taken by another process; moved to port {}", st.port, st.host, *moved);
    st.port = *moved;
  }
  st.argv = plan::backend_argv(spec, o_.llama_bin, st.port);
  std::string cmd;
  for (const auto& a : st.argv) cmd += (cmd.empty() ? "" : " ") + a;
  if (!st.log_path.empty()) {
    files_.rotate_if_larger(st.log_path, o_.log_max_bytes, o_.log_keep);
    files_.append_line(st.log_path, fmt::format("[agifarm] start #{}: {}", s.spawns, cmd));
  }
  auto pid = launcher_.spawn({st.argv, spec.env, st.log_path});
  if (!pid) {
    record_failure(i, pid.err().message, now, false);
    return;
  }
  st.pid = *pid;
  st.started_at = now;
  st.started_wall = clock_.wall_now();
  s.start_deadline = now + o_.start_timeout;
  s.next_health = now + o_.health_interval_starting;
  s.next_progress = now;
  set_state(i, backend_state::starting);
}

void supervisor::kill_for(std::size_t i, after_stop then, std::string reason, time_point now) {
  auto& st = status_[i];
  auto& s = slots_[i];
  const bool was_ready = st.state == backend_state::ready;
  s.then = then;
  s.pending_reason = std::move(reason);
  s.stop_deadline = now + o_.stop_timeout;
  s.killed = false;
  launcher_.signal_group(st.pid, SIGTERM);
  if (then != after_stop::stopped) st.reason = s.pending_reason;
  set_state(i, backend_state::stopping);
  if (was_ready) left_ready(i, now);
}

void supervisor::left_ready(std::size_t i, time_point now) {
  for (std::size_t d : slots_[i].dependents) {
    auto ds = status_[d].state;
    if (ds == backend_state::starting || ds == backend_state::ready)
      kill_for(d, after_stop::waiting,
               fmt::format("restarting because dependency '{}' left ready", status_[i].name), now);
  }
}

void supervisor::fail(std::size_t i, std::string reason) {
  status_[i].reason = std::move(reason);
  set_state(i, backend_state::failed);
  for (std::size_t d : slots_[i].dependents) {
    auto ds = status_[d].state;
    if (ds == backend_state::waiting || ds == backend_state::backoff)
      fail(d, fmt::format("dependency '{}' failed", status_[i].name));
    else if (ds == backend_state::starting || ds == backend_state::ready)
      kill_for(d, after_stop::failed, fmt::format("dependency '{}' failed", status_[i].name), clock_.now());
  }
}

void supervisor::record_failure(std::size_t i, std::string reason, time_point now, bool was_ready) {
  auto& st = status_[i];
  auto& s = slots_[i];
  if (!st.log_path.empty()) {
    st.log_tail = files_.tail(st.log_path, 20);
    for (std::size_t k = st.log_tail.size(); k-- > 0;)  // only this process's lines
      if (st.log_tail[k].rfind("[agifarm]", 0) == 0) {
        st.log_tail.erase(st.log_tail.begin(), st.log_tail.begin() + static_cast<std::ptrdiff_t>(k) + 1);
        break;
      }
    std::string why = failure_reason(st.log_tail);
    if (!why.empty() && reason.find(why) == std::string::npos) reason += "; log: " + why;
  }
  st.reason = reason;
  if (was_ready && now - st.ready_at >= o_.healthy_reset) {
    s.backoff = o_.backoff_initial;
    s.failures.clear();
  }
  s.failures.push_back(now);
  while (!s.failures.empty() && now - s.failures.front() > o_.failure_window) s.failures.pop_front();
  st.failures = static_cast<int>(s.failures.size());
  if (static_cast<int>(s.failures.size()) >= o_.max_failures) {
    fail(i, fmt::format("{} failures within {:.0f} s; last: {}", s.failures.size(),
                        seconds(o_.failure_window), reason));
    return;
  }
  st.next_start = now + s.backoff;
  s.backoff = std::min(s.backoff * 2, o_.backoff_cap);
  set_state(i, backend_state::backoff);
}

void supervisor::handle_exit(std::size_t i, const exit_info& e, time_point now) {
  auto& st = status_[i];
  auto& s = slots_[i];
  const auto prev = st.state;
  const bool was_ready =
      prev == backend_state::ready || (prev == backend_state::stopping && st.ready_at > st.started_at);
  st.pid = 0;
  st.last_exit = e.describe();
  s.health_in_flight = s.probe_in_flight = false;
  if (prev == backend_state::stopping) {
    switch (s.then) {
      case after_stop::stopped:
        set_state(i, backend_state::stopped);
        break;
      case after_stop::waiting:
        set_state(i, backend_state::waiting);
        break;
      case after_stop::failed:
        fail(i, s.pending_reason);
        break;
      case after_stop::crash:
        record_failure(i, s.pending_reason, now, was_ready);
        break;
    }
    return;
  }
  if (prev != backend_state::starting && prev != backend_state::ready) return;
  std::string reason = fmt::format("exited while {} ({})", to_string(prev), e.describe());
  if (prev == backend_state::ready) left_ready(i, now);
  if (shutting_down_) {
    set_state(i, backend_state::stopped);
    return;
  }
  record_failure(i, reason, now, was_ready);
}

void supervisor::handle_probe(std::size_t i, const probe_result& r, time_point now) {
  auto& st = status_[i];
  auto& s = slots_[i];
  if (r.tag != s.gen) return;  // from an earlier process of this backend
  const bool health = r.kind != probe_kind::completion;
  if (health)
    s.health_in_flight = false;
  else
    s.probe_in_flight = false;
  if (shutting_down_) return;
  if (st.state == backend_state::starting && health) {
    if (r.outcome == probe_outcome::ok) {
      st.ready_at = now;
      s.health_fail = 0;
      s.next_health = now + o_.health_interval_ready;
      s.next_probe = now + o_.probe_interval;
      st.reason.clear();
      set_state(i, backend_state::ready);
    }
    return;
  }
  if (st.state != backend_state::ready) return;
  if (health) {
    if (r.outcome == probe_outcome::ok) {
      s.health_fail = 0;
      return;
    }
    if (++s.health_fail >= o_.health_failures_to_restart)
      kill_for(i, after_stop::crash,
               fmt::format("health check failed {} times in a row ({})", s.health_fail, r.detail), now);
    return;
  }
  if (r.outcome == probe_outcome::ok || r.outcome == probe_outcome::busy) {
    s.probe_fail = 0;
    return;
  }
  if (++s.probe_fail >= o_.probe_failures_to_restart)
    kill_for(
        i, after_stop::crash,
        fmt::format("wedged: a 1-token completion failed {} times in a row ({})", s.probe_fail, r.detail),
        now);
}

}  // namespace agifarm::supervise
