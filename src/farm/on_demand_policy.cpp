#include "farm/on_demand_policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

namespace agifarm::farm {

const char* to_string(model_phase p) {
  switch (p) {
    case model_phase::unloaded:
      return "unloaded";
    case model_phase::loading:
      return "loading";
    case model_phase::loaded:
      return "loaded";
    case model_phase::stopping:
      return "stopping";
  }
  return "?";
}

const char* to_string(od_verdict v) {
  switch (v) {
    case od_verdict::start:
      return "start";
    case od_verdict::evict:
      return "evict";
    case od_verdict::wait:
      return "wait";
    case od_verdict::refuse:
      return "refuse";
    case od_verdict::nothing:
      return "nothing";
  }
  return "?";
}

std::string mib(std::uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

namespace {

bool holds_memory(model_phase p) { return p != model_phase::unloaded; }

// Does freeing the models in `set` cover every device of `short_by`?
bool covers(const std::vector<od_model>& models, const std::vector<std::size_t>& set,
            const device_bytes& short_by) {
  for (const auto& [dev, missing] : short_by) {
    std::uint64_t freed = 0;
    for (auto i : set)
      if (auto it = models[i].need.find(dev); it != models[i].need.end()) freed += it->second;
    if (freed < missing) return false;
  }
  return true;
}

bool uses_any(const od_model& m, const device_bytes& devices) {
  for (const auto& [dev, b] : devices)
    if (auto it = m.need.find(dev); it != m.need.end() && it->second > 0) return true;
  return false;
}

// The fewest of `cands` (already in preference order) whose memory covers `short_by`: combinations of
// growing size, each size in lexicographic order of the preference. Beyond 20 candidates: greedy.
std::optional<std::vector<std::size_t>> fewest_covering(const std::vector<od_model>& models,
                                                        const std::vector<std::size_t>& cands,
                                                        const device_bytes& short_by) {
  const std::size_t n = cands.size();
  if (n > 20) {
    std::vector<std::size_t> set;
    for (auto c : cands) {
      set.push_back(c);
      if (covers(models, set, short_by)) {
        // Drop any member the rest can do without (never more than needed).
        for (std::size_t k = set.size(); k-- > 0;) {
          auto trial = set;
          trial.erase(trial.begin() + static_cast<std::ptrdiff_t>(k));
          if (covers(models, trial, short_by)) set = std::move(trial);
        }
        return set;
      }
    }
    return std::nullopt;
  }
  for (std::size_t k = 1; k <= n; ++k) {
    std::vector<std::size_t> idx(k);
    std::iota(idx.begin(), idx.end(), 0);
    for (;;) {
      std::vector<std::size_t> set;
      for (auto i : idx) set.push_back(cands[i]);
      if (covers(models, set, short_by)) return set;
      // next combination
      std::size_t i = k;
      while (i > 0 && idx[i - 1] == n - k + (i - 1)) --i;
      if (i == 0) break;
      ++idx[i - 1];
      for (std::size_t j = i; j < k; ++j) idx[j] = idx[j - 1] + 1;
    }
  }
  return std::nullopt;
}

std::string names(const std::vector<od_model>& models, const std::vector<std::size_t>& set) {
  std::string out;
  for (auto i : set) out += (out.empty() ? "" : ", ") + models[i].name;
  return out;
}

std::string describe_short(const device_bytes& short_by, const device_bytes& need, const device_bytes& held,
                           const device_bytes& cap) {
  std::string out;
  for (const auto& [dev, missing] : short_by) {
    const auto c = cap.at(dev);
    const auto h = held.count(dev) ? held.at(dev) : 0;
    out += fmt::format("{}{} on {} ({} free of {})", out.empty() ? "" : ", ", mib(need.at(dev)), dev,
                       mib(h >= c ? 0 : c - h), mib(c));
  }
  return out;
}

}  // namespace

device_bytes held_bytes(const std::vector<od_model>& models) {
  device_bytes out;
  for (const auto& m : models)
    if (holds_memory(m.phase))
      for (const auto& [dev, b] : m.need) out[dev] += b;
  return out;
}

device_bytes shortfall(const device_bytes& held, const device_bytes& need, const device_bytes& capacity) {
  device_bytes out;
  for (const auto& [dev, b] : need) {
    auto c = capacity.find(dev);
    if (c == capacity.end() || b == 0) continue;
    const std::uint64_t h = held.count(dev) ? held.at(dev) : 0;
    if (h + b > c->second) out[dev] = h + b - c->second;
  }
  return out;
}

od_decision decide_load(const std::vector<od_model>& models, std::size_t target, const device_bytes& capacity,
                        od_time now, const od_options& o) {
  od_decision d;
  if (target >= models.size()) return d;
  const od_model& t = models[target];
  if (t.phase == model_phase::loading || t.phase == model_phase::loaded) return d;  // no double start
  if (t.phase == model_phase::stopping) {
    d.verdict = od_verdict::wait;
    d.reason = fmt::format("model '{}' is still stopping", t.name);
    return d;
  }
  for (const auto& [dev, b] : t.need) {
    auto c = capacity.find(dev);
    if (c != capacity.end() && b > c->second) {
      d.verdict = od_verdict::refuse;
      d.reason = fmt::format(
          "model '{}' needs {} on {}, which has {} in all: it cannot load however many models "
          "are stopped",
          t.name, mib(b), dev, mib(c->second));
      return d;
    }
  }
  const device_bytes held = held_bytes(models);
  if (shortfall(held, t.need, capacity).empty()) {
    d.verdict = od_verdict::start;
    return d;
  }
  // What is short once the models already stopping are gone: only that needs new victims.
  device_bytes after = held;
  std::vector<std::size_t> stopping;
  for (std::size_t i = 0; i < models.size(); ++i)
    if (models[i].phase == model_phase::stopping) {
      stopping.push_back(i);
      for (const auto& [dev, b] : models[i].need) after[dev] -= b;
    }
  const device_bytes short_by = shortfall(after, t.need, capacity);
  if (short_by.empty()) {
    d.verdict = od_verdict::wait;
    d.reason = fmt::format("model '{}' waits for {} to stop", t.name, names(models, stopping));
    return d;
  }
  // Idle, unpinned, on-demand, loaded models that use a short device, in preference order.
  std::vector<std::size_t> cands, later, blockers;
  for (std::size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    if (i == target || !holds_memory(m.phase) || m.phase == model_phase::stopping || !uses_any(m, short_by))
      continue;
    if (!m.on_demand || m.pinned) {
      blockers.push_back(i);
      continue;
    }
    const bool idle =
        m.phase == model_phase::loaded && m.in_flight == 0 && m.queued == 0 && now - m.last_used >= o.hold;
    (idle ? cands : later).push_back(i);
  }
  std::stable_sort(cands.begin(), cands.end(), [&](std::size_t a, std::size_t b) {
    if (models[a].priority != models[b].priority) return models[a].priority < models[b].priority;
    return models[a].last_used < models[b].last_used;
  });
  if (auto set = fewest_covering(models, cands, short_by)) {
    d.verdict = od_verdict::evict;
    d.evict = std::move(*set);
    return d;
  }
  // Could it fit once the busy, recently used, loading or stopping ones are stopped too?
  std::vector<std::size_t> all = cands;
  all.insert(all.end(), later.begin(), later.end());
  if (covers(models, all, short_by)) {
    d.verdict = od_verdict::wait;
    std::vector<std::size_t> busy, held_back;
    for (auto i : later) {
      const auto& m = models[i];
      if (m.phase == model_phase::loading || m.in_flight > 0 || m.queued > 0)
        busy.push_back(i);
      else
        held_back.push_back(i);
    }
    std::string why;
    if (!busy.empty()) why += fmt::format("{}{} busy", why.empty() ? "" : "; ", names(models, busy));
    if (!held_back.empty())
      why +=
          fmt::format("{}{} used within the batch window", why.empty() ? "" : "; ", names(models, held_back));
    d.reason = fmt::format("model '{}' needs {}: waiting ({})", t.name,
                           describe_short(short_by, t.need, after, capacity), why);
    return d;
  }
  d.verdict = od_verdict::refuse;
  std::string pinned, always;
  for (auto i : blockers) {
    std::string& s = models[i].on_demand ? pinned : always;
    s += fmt::format("{}{}", s.empty() ? "" : ", ", models[i].name);
  }
  std::string must_go;
  if (!pinned.empty()) must_go += "pinned " + pinned;
  if (!always.empty()) must_go += (must_go.empty() ? "always-on " : "; always-on ") + always;
  d.reason = fmt::format(
      "model '{}' needs {}; stopping every evictable model would not make room: {} would have to "
      "go (pinned and always-on models are never evicted)",
      t.name, describe_short(short_by, t.need, after, capacity), must_go.empty() ? "?" : must_go);
  return d;
}

std::optional<std::size_t> next_to_load(const std::vector<od_model>& models) {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    if (m.phase != model_phase::unloaded || m.queued <= 0) continue;
    if (!best || m.priority > models[*best].priority ||
        (m.priority == models[*best].priority && m.waiting_since < models[*best].waiting_since))
      best = i;
  }
  return best;
}

std::vector<std::size_t> expired(const std::vector<od_model>& models, od_time now) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    if (m.on_demand && m.phase == model_phase::loaded && m.ttl.count() > 0 && m.in_flight == 0 &&
        m.queued == 0 && now - m.last_used >= m.ttl)
      out.push_back(i);
  }
  return out;
}

std::vector<std::string> never_fit(const std::vector<od_model>& models, const device_bytes& capacity) {
  device_bytes fixed;
  std::string always;
  for (const auto& m : models)
    if (!m.on_demand) {
      for (const auto& [dev, b] : m.need) fixed[dev] += b;
      always += (always.empty() ? "" : ", ") + m.name;
    }
  std::vector<std::string> out;
  for (const auto& [dev, c] : capacity)
    if (fixed.count(dev) && fixed[dev] > c)
      out.push_back(fmt::format("the always-on models ({}) need {} on {}, which has {}", always,
                                mib(fixed[dev]), dev, mib(c)));
  for (const auto& m : models) {
    if (!m.on_demand) continue;
    for (const auto& [dev, b] : m.need) {
      auto c = capacity.find(dev);
      if (c == capacity.end()) continue;
      const std::uint64_t f = fixed.count(dev) ? fixed[dev] : 0;
      if (f + b > c->second)
        out.push_back(fmt::format("on-demand model '{}' needs {} on {}, but {} has {}{}", m.name, mib(b), dev,
                                  dev, mib(c->second),
                                  f ? fmt::format(" and the always-on models hold {}", mib(f)) : ""));
    }
  }
  return out;
}

}  // namespace agifarm::farm
