// on_demand_policy: the eviction rule on hand-made farms, a property test over random scripts of
// requests, loads and finishes, and the farm file's on-demand keys.
#include "farm/on_demand_policy.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "farm/farm_file.hpp"

namespace agifarm::farm {
namespace {

using namespace std::chrono_literals;
constexpr std::uint64_t k_mib = 1024 * 1024;

od_model model(std::string name, std::uint64_t host_mib, model_phase p = model_phase::loaded,
               bool on_demand = true) {
  od_model m;
  m.name = std::move(name);
  m.on_demand = on_demand;
  m.need["host"] = host_mib * k_mib;
  m.phase = p;
  return m;
}

const od_time t0 = od_time{} + 1000s;

TEST(on_demand_policy, starts_when_it_fits_without_evicting) {
  std::vector<od_model> ms{model("a", 100), model("b", 100, model_phase::unloaded)};
  auto d = decide_load(ms, 1, {{"host", 300 * k_mib}}, t0, {});
  EXPECT_EQ(d.verdict, od_verdict::start);
  EXPECT_TRUE(d.evict.empty());
}

TEST(on_demand_policy, evicts_the_least_recently_used_idle_model_never_the_busy_one) {
  std::vector<od_model> ms{model("a", 100), model("b", 100), model("c", 100, model_phase::unloaded)};
  ms[0].last_used = t0 - 10s;  // a: older but busy
  ms[0].in_flight = 1;
  ms[1].last_used = t0 - 5s;
  auto d = decide_load(ms, 2, {{"host", 250 * k_mib}}, t0, {});
  ASSERT_EQ(d.verdict, od_verdict::evict);
  EXPECT_EQ(d.evict, std::vector<std::size_t>{1});
  ms[0].in_flight = 0;
  d = decide_load(ms, 2, {{"host", 250 * k_mib}}, t0, {});
  ASSERT_EQ(d.verdict, od_verdict::evict);
  EXPECT_EQ(d.evict, std::vector<std::size_t>{0});  // now a is idle and least recently used
  // Once the victim is stopping: wait for it (nothing more is evicted); once gone: start.
  ms[0].phase = model_phase::stopping;
  d = decide_load(ms, 2, {{"host", 250 * k_mib}}, t0, {});
  EXPECT_EQ(d.verdict, od_verdict::wait);
  EXPECT_TRUE(d.evict.empty());
  ms[0].phase = model_phase::unloaded;
  d = decide_load(ms, 2, {{"host", 250 * k_mib}}, t0, {});
  EXPECT_EQ(d.verdict, od_verdict::start);
}

TEST(on_demand_policy, evicts_the_fewest_models_that_free_enough_on_exactly_the_short_device) {
  // host is short by 150 MiB; GPU is fine. One big model beats two small ones even if they are older.
  std::vector<od_model> ms{model("s1", 80), model("s2", 80), model("big", 200), model("gpu", 10),
                           model("t", 150, model_phase::unloaded)};
  ms[3].need = {{"CUDA0", 500 * k_mib}};  // uses only the GPU: stopping it frees nothing on host
  ms[0].last_used = t0 - 30s;
  ms[1].last_used = t0 - 20s;
  ms[2].last_used = t0 - 10s;
  ms[3].last_used = t0 - 40s;
  auto d = decide_load(ms, 4, {{"host", 360 * k_mib}, {"CUDA0", 1000 * k_mib}}, t0, {});
  ASSERT_EQ(d.verdict, od_verdict::evict);
  EXPECT_EQ(d.evict, std::vector<std::size_t>{2});
}

TEST(on_demand_policy, pinned_and_always_on_models_are_never_evicted_and_the_refusal_names_them) {
  std::vector<od_model> ms{model("keep", 200, model_phase::loaded, false), model("pinned", 100),
                           model("t", 150, model_phase::unloaded)};
  ms[1].pinned = true;
  auto d = decide_load(ms, 2, {{"host", 400 * k_mib}}, t0, {});
  ASSERT_EQ(d.verdict, od_verdict::refuse);
  EXPECT_NE(d.reason.find("pinned pinned"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("always-on keep"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("model 't' needs 150.0 MiB on host"), std::string::npos) << d.reason;
}

TEST(on_demand_policy, a_model_larger_than_its_device_is_refused_outright) {
  std::vector<od_model> ms{model("t", 500, model_phase::unloaded)};
  auto d = decide_load(ms, 0, {{"host", 400 * k_mib}}, t0, {});
  ASSERT_EQ(d.verdict, od_verdict::refuse);
  EXPECT_NE(d.reason.find("cannot load"), std::string::npos) << d.reason;
}

TEST(on_demand_policy, busy_or_recently_used_victims_mean_wait_not_refuse) {
  std::vector<od_model> ms{model("a", 200), model("t", 200, model_phase::unloaded)};
  ms[0].in_flight = 2;
  auto d = decide_load(ms, 1, {{"host", 300 * k_mib}}, t0, {});
  EXPECT_EQ(d.verdict, od_verdict::wait);
  EXPECT_NE(d.reason.find("a busy"), std::string::npos) << d.reason;
  ms[0].in_flight = 0;
  ms[0].last_used = t0 - 1s;
  d = decide_load(ms, 1, {{"host", 300 * k_mib}}, t0, {.hold = 2s});
  EXPECT_EQ(d.verdict, od_verdict::wait);
  EXPECT_NE(d.reason.find("batch window"), std::string::npos) << d.reason;
  d = decide_load(ms, 1, {{"host", 300 * k_mib}}, t0 + 1s, {.hold = 2s});
  ASSERT_EQ(d.verdict, od_verdict::evict);
  EXPECT_EQ(d.evict, std::vector<std::size_t>{0});
}

TEST(on_demand_policy, loading_or_loaded_targets_are_never_started_again) {
  std::vector<od_model> ms{model("t", 10, model_phase::loading)};
  EXPECT_EQ(decide_load(ms, 0, {{"host", 400 * k_mib}}, t0, {}).verdict, od_verdict::nothing);
  ms[0].phase = model_phase::loaded;
  EXPECT_EQ(decide_load(ms, 0, {{"host", 400 * k_mib}}, t0, {}).verdict, od_verdict::nothing);
}

TEST(on_demand_policy, next_to_load_ttl_and_never_fit) {
  std::vector<od_model> ms{model("a", 10, model_phase::unloaded), model("b", 10, model_phase::unloaded),
                           model("c", 10)};
  ms[0].queued = 1;
  ms[0].waiting_since = t0 - 5s;
  ms[1].queued = 3;
  ms[1].waiting_since = t0 - 1s;
  EXPECT_EQ(next_to_load(ms), 0u);  // the oldest wait
  ms[1].priority = 1;
  EXPECT_EQ(next_to_load(ms), 1u);  // then priority first
  ms[2].ttl = 60s;
  ms[2].last_used = t0 - 59s;
  EXPECT_TRUE(expired(ms, t0).empty());
  EXPECT_EQ(expired(ms, t0 + 1s), std::vector<std::size_t>{2});
  ms[2].in_flight = 1;
  EXPECT_TRUE(expired(ms, t0 + 100s).empty());

  std::vector<od_model> f{model("always", 300, model_phase::loaded, false),
                          model("od", 200, model_phase::unloaded)};
  auto lines = never_fit(f, {{"host", 400 * k_mib}});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("on-demand model 'od' needs 200.0 MiB"), std::string::npos) << lines[0];
  EXPECT_TRUE(never_fit(f, {{"host", 500 * k_mib}}).empty());
}

// Property test: random farms and random scripts of request arrivals, runner steps (which load, evict,
// dispatch and expire as the runner does), loads finishing, stops finishing and requests finishing.
// After every step: never over budget by prediction, never an evicted model with a request in flight
// or queued, never a start of a model that is not unloaded, never more victims than needed, never a
// pinned or always-on victim, and no smaller set of idle victims would have done.
TEST(on_demand_policy, property_random_scripts_keep_the_invariants) {
  std::mt19937 rng(20261205);
  int starts = 0, evictions = 0, refusals = 0, waits = 0;
  for (int farm = 0; farm < 300; ++farm) {
    const std::vector<std::string> devices{"host", "CUDA0"};
    device_bytes cap{{"host", (200 + rng() % 400) * k_mib}, {"CUDA0", (100 + rng() % 300) * k_mib}};
    std::vector<od_model> ms;
    const int n = 2 + static_cast<int>(rng() % 6);
    device_bytes always;
    for (int i = 0; i < n; ++i) {
      od_model m;
      m.name = std::to_string(i);
      m.name.insert(m.name.begin(), 'm');
      m.on_demand = i > 0 || rng() % 2;
      m.pinned = m.on_demand && rng() % 5 == 0;
      m.priority = static_cast<int>(rng() % 3);
      m.ttl = std::chrono::seconds(rng() % 4 == 0 ? 0 : 5 + rng() % 30);
      for (const auto& d : devices)
        if (rng() % 3) m.need[d] = (10 + rng() % 200) * k_mib;
      if (!m.on_demand) {
        // Always-on models start loaded; keep them within the budget (`up` refuses otherwise).
        bool fits = true;
        for (const auto& [d, b] : m.need) fits = fits && always[d] + b <= cap[d];
        if (!fits)
          m.on_demand = true;
        else
          for (const auto& [d, b] : m.need) always[d] += b;
      }
      m.phase = m.on_demand ? model_phase::unloaded : model_phase::loaded;
      ms.push_back(m);
    }
    od_options opt{std::chrono::seconds(rng() % 3)};
    od_time now = t0;
    std::vector<od_model> before;
    for (int step = 0; step < 400; ++step) {
      now += std::chrono::milliseconds(rng() % 1500);
      const auto i = rng() % ms.size();
      auto& m = ms[i];
      switch (rng() % 9) {
        case 0:  // a request arrives
        case 1:
          if (m.phase == model_phase::loaded) {
            m.in_flight++;
            m.last_used = now;
          } else {
            if (m.queued == 0) m.waiting_since = now;
            m.queued++;
          }
          break;
        case 2:  // a request finishes
        case 3:
        case 4:
          if (m.in_flight > 0) {
            m.in_flight--;
            m.last_used = now;
          }
          break;
        case 5:  // a load finishes: the model's queue is served
          if (m.phase == model_phase::loading) {
            m.phase = model_phase::loaded;
            m.in_flight += m.queued;
            m.queued = 0;
            m.last_used = now;
          }
          break;
        case 6:  // a stop finishes
          if (m.phase == model_phase::stopping) m.phase = model_phase::unloaded;
          break;
        default: {  // the runner's step: expire, then load what waits
          for (auto e : expired(ms, now)) {
            ASSERT_EQ(ms[e].in_flight, 0);
            ASSERT_EQ(ms[e].queued, 0);
            ms[e].phase = model_phase::stopping;
          }
          auto t = next_to_load(ms);
          if (!t) break;
          ASSERT_EQ(ms[*t].phase, model_phase::unloaded);
          auto d = decide_load(ms, *t, cap, now, opt);
          if (d.verdict == od_verdict::refuse) {
            ++refusals;
            ASSERT_FALSE(d.reason.empty());
            ms[*t].queued = 0;  // its waiters get the 503
            break;
          }
          if (d.verdict == od_verdict::wait) {
            ++waits;
            ASSERT_FALSE(d.reason.empty());
            break;
          }
          if (d.verdict == od_verdict::start) {
            ASSERT_TRUE(d.evict.empty());
            ms[*t].phase = model_phase::loading;
            ++starts;
            break;
          }
          ASSERT_EQ(d.verdict, od_verdict::evict);
          ASSERT_FALSE(d.evict.empty());
          // Victims: idle, evictable; no victim is superfluous; no smaller idle set would do.
          auto held = held_bytes(ms);
          for (const auto& x : ms)
            if (x.phase == model_phase::stopping)
              for (const auto& [dev, b] : x.need) held[dev] -= b;
          auto short_by = shortfall(held, ms[*t].need, cap);
          std::set<std::size_t> victims(d.evict.begin(), d.evict.end());
          ASSERT_EQ(victims.size(), d.evict.size());
          for (auto v : d.evict) {
            ASSERT_NE(v, *t);
            ASSERT_TRUE(ms[v].on_demand && !ms[v].pinned);
            ASSERT_EQ(ms[v].phase, model_phase::loaded);
            ASSERT_EQ(ms[v].in_flight, 0) << "evicted a model with a request in flight";
            ASSERT_EQ(ms[v].queued, 0);
            ASSERT_GE(now - ms[v].last_used, opt.hold);
          }
          auto frees = [&](const std::vector<std::size_t>& set) {
            for (const auto& [dev, missing] : short_by) {
              std::uint64_t f = 0;
              for (auto v : set) f += ms[v].need.count(dev) ? ms[v].need.at(dev) : 0;
              if (f < missing) return false;
            }
            return true;
          };
          ASSERT_TRUE(frees(d.evict));
          for (std::size_t k = 0; k < d.evict.size(); ++k) {
            auto less = d.evict;
            less.erase(less.begin() + static_cast<std::ptrdiff_t>(k));
            ASSERT_FALSE(frees(less)) << "evicted more than needed";
          }
          if (d.evict.size() > 1) {  // brute force: no smaller set of eligible models frees enough
            std::vector<std::size_t> eligible;
            for (std::size_t k = 0; k < ms.size(); ++k)
              if (k != *t && ms[k].on_demand && !ms[k].pinned && ms[k].phase == model_phase::loaded &&
                  ms[k].in_flight == 0 && ms[k].queued == 0 && now - ms[k].last_used >= opt.hold)
                eligible.push_back(k);
            for (std::uint32_t mask = 0; mask < (1u << eligible.size()); ++mask) {
              if (static_cast<std::size_t>(__builtin_popcount(mask)) >= d.evict.size()) continue;
              std::vector<std::size_t> set;
              for (std::size_t b = 0; b < eligible.size(); ++b)
                if (mask & (1u << b)) set.push_back(eligible[b]);
              ASSERT_FALSE(frees(set)) << "a smaller set of victims would have done";
            }
          }
          for (auto v : d.evict) ms[v].phase = model_phase::stopping;
          evictions += static_cast<int>(d.evict.size());
        }
      }
      // Never over budget by prediction (stopping models still count until their process is gone).
      auto held = held_bytes(ms);
      for (const auto& [dev, c] : cap)
        ASSERT_LE(held[dev], c) << "over budget on " << dev << " at step " << step;
      for (const auto& x : ms) {
        ASSERT_GE(x.in_flight, 0);
        if (x.in_flight > 0) {
          ASSERT_EQ(x.phase, model_phase::loaded) << "a request runs on a model not loaded";
        }
      }
    }
  }
  // The scripts exercised every branch.
  std::printf("property: %d starts, %d evictions, %d refusals, %d waits\n", starts, evictions, refusals,
              waits);
  EXPECT_GT(starts, 1000);
  EXPECT_GT(evictions, 100);
  EXPECT_GT(refusals, 10);
  EXPECT_GT(waits, 100);
}

TEST(farm_file_on_demand, reads_on_demand_ttl_pin_priority_and_settings) {
  auto f = parse_farm_file(R"(
models:
  a: x.gguf
  b: {file: y.gguf, on_demand: true, ttl: 90s, pin: true, priority: 2}
  c: {file: z.gguf, on_demand: true, ttl: 0}
  d: {file: w.gguf, on_demand: true}
on_demand: {batch_ms: 0, load_timeout_s: 30, save_slots: false}
)",
                           "farm.yaml", "/base", "/home/u");
  ASSERT_TRUE(f.ok()) << f.err().message;
  EXPECT_FALSE(f->models[0].on_demand);
  EXPECT_TRUE(f->models[1].on_demand);
  EXPECT_DOUBLE_EQ(f->models[1].ttl_s, 90);
  EXPECT_TRUE(f->models[1].pin);
  EXPECT_EQ(f->models[1].priority, 2);
  EXPECT_DOUBLE_EQ(f->models[2].ttl_s, 0);
  EXPECT_DOUBLE_EQ(f->models[3].ttl_s, 600);
  EXPECT_DOUBLE_EQ(f->on_demand.batch_ms, 0);
  EXPECT_DOUBLE_EQ(f->on_demand.load_timeout_s, 30);
  EXPECT_FALSE(f->on_demand.save_slots);
  EXPECT_TRUE(has_on_demand(*f));
  EXPECT_EQ(parse_duration_s("10m"), 600.0);
  EXPECT_EQ(parse_duration_s("1.5h"), 5400.0);
  EXPECT_EQ(parse_duration_s("250ms"), 0.25);
  EXPECT_EQ(parse_duration_s("-1"), std::nullopt);
  EXPECT_EQ(parse_duration_s("soon"), std::nullopt);
}

TEST(farm_file_on_demand, errors_name_file_line_and_key) {
  auto err = [](const std::string& text) {
    auto f = parse_farm_file(text, "farm.yaml", "/base", "/home/u");
    EXPECT_FALSE(f.ok()) << text;
    return f.ok() ? std::string() : f.err().message;
  };
  std::string e = err("models:\n  a: {file: x.gguf, ttl: 10s}\n");
  EXPECT_NE(e.find("farm.yaml:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("models.a.ttl"), std::string::npos) << e;
  EXPECT_NE(e.find("on_demand: true"), std::string::npos) << e;
  e = err("models:\n  a: {file: x.gguf, pin: true}\n");
  EXPECT_NE(e.find("models.a.pin"), std::string::npos) << e;
  e = err("models:\n  a: {file: x.gguf, on_demand: yes please}\n");
  EXPECT_NE(e.find("models.a.on_demand"), std::string::npos) << e;
  EXPECT_NE(e.find("true or false"), std::string::npos) << e;
  e = err("models:\n  a: {file: x.gguf, on_demand: true, ttl: soon}\n");
  EXPECT_NE(e.find("farm.yaml:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("not a duration"), std::string::npos) << e;
  e = err("models:\n  a: {file: x.gguf, priority: 1.5}\n");
  EXPECT_NE(e.find("models.a.priority"), std::string::npos) << e;
  e = err("on_demand: {batch: 1}\n");
  EXPECT_NE(e.find("farm.yaml:1:"), std::string::npos) << e;
  EXPECT_NE(e.find("on_demand.batch"), std::string::npos) << e;
  e = err("on_demand: true\n");
  EXPECT_NE(e.find("on_demand"), std::string::npos) << e;
}

}  // namespace
}  // namespace agifarm::farm
