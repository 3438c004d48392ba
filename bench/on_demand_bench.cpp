// on_demand_bench: an agent workload over more models than fit, replayed against three load/evict rules
// in one run (issue 12). A discrete-time simulation (10 ms ticks) whose agifarm rule is the real
// farm/on_demand_policy code (decide_load, next_to_load, expired); the peers:
//   restart  every request starts its model and stops it when done (no residency)
//   lru-N    the others' rule: at most N models loaded (llama.cpp router --models-max N), the least
//            recently used idle one unloaded to make room, sizes ignored (N = 2: any two fit)
// Load time is size / load bandwidth; each model serves `slots` requests at once; agents think
// between requests. Prints requests/s, p95 latency and loads per 100 requests for each rule and the
// ratios agifarm / peer. Usage: on_demand_bench [seconds simulated, default 3600] [seed].
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "farm/on_demand_policy.hpp"

using namespace agifarm::farm;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t k_gib = 1ull << 30;

struct model_def {
  const char* name;
  double gib;        // predicted bytes on the GPU
  double service_s;  // mean time of one request
  int slots;
};

// A personal farm on one 48 GiB GPU: a big thinker, a coder, small helpers, an embedding model.
const std::vector<model_def> k_models{
    {"think-32b", 26, 12.0, 1}, {"code-14b", 12, 5.0, 2},   {"tool-4b", 4, 1.5, 4},
    {"search-4b", 4, 1.5, 4},   {"summ-1.7b", 2.5, 1.0, 4}, {"embed-0.6b", 1, 0.1, 8},
};
constexpr double k_capacity_gib = 44;   // what is left for models on a 48 GiB card
constexpr double k_load_gib_per_s = 2;  // from page cache into VRAM, with llama-server start-up
constexpr int k_agents = 6;

// An agent's next model after `prev`: coding agents go code -> tool/search -> code, sometimes think,
// and embed/summarize along the way.
int next_model(int prev, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  double x = u(rng);
  switch (prev) {
    case 1:
      return x < 0.35 ? 2 : x < 0.6 ? 3 : x < 0.75 ? 5 : x < 0.85 ? 0 : 4;
    case 0:
      return x < 0.7 ? 1 : 4;
    default:
      return x < 0.6 ? 1 : x < 0.75 ? 5 : x < 0.85 ? 0 : x < 0.95 ? 2 : 4;
  }
}

enum class rule { agifarm, restart, lru };

struct request {
  double arrived = 0;
  int agent = 0;
};

struct sim_model {
  od_model m;
  std::deque<request> queue;
  std::vector<std::pair<double, request>> running;  // finish time, request
  double phase_until = 0;                           // loading / stopping ends
  bool served = false;                              // restart rule: served since it loaded
};

struct result {
  double rps = 0, p95 = 0, loads_per_100 = 0;
  std::uint64_t done = 0, loads = 0;
};

result simulate(rule r, double seconds, unsigned seed) {
  std::mt19937 rng(seed);
  const double dt = 0.01;
  std::vector<sim_model> ms;
  for (const auto& d : k_models) {
    sim_model s;
    s.m.name = d.name;
    s.m.on_demand = true;
    s.m.ttl = 600s;
    s.m.need["gpu"] = static_cast<std::uint64_t>(d.gib * k_gib);
    ms.push_back(std::move(s));
  }
  const device_bytes cap{{"gpu", static_cast<std::uint64_t>(k_capacity_gib * k_gib)}};
  od_options opt{2s};
  std::vector<double> latencies;
  std::uint64_t loads = 0;
  std::vector<int> last(k_agents);
  std::vector<double> next_send(k_agents, 0);
  std::exponential_distribution<double> think(1.0 / 2.0);  // agent thinks 2 s on average
  for (int a = 0; a < k_agents; ++a) {
    last[a] = static_cast<int>(rng() % 3);
    next_send[a] = think(rng);
  }
  auto tp = [](double t) {
    return od_time{} + std::chrono::duration_cast<od_duration>(std::chrono::duration<double>(t));
  };
  auto start = [&](sim_model& s, double now) {
    s.m.phase = model_phase::loading;
    s.phase_until = now + static_cast<double>(s.m.need.at("gpu")) / k_gib / k_load_gib_per_s;
    ++loads;
  };
  auto stop = [&](sim_model& s, double now) {
    s.m.phase = model_phase::stopping;
    s.phase_until = now + 0.5;
  };
  for (double now = 0; now < seconds; now += dt) {
    // Agents send.
    for (int a = 0; a < k_agents; ++a)
      if (next_send[a] >= 0 && now >= next_send[a]) {
        last[a] = next_model(last[a], rng);
        auto& s = ms[static_cast<std::size_t>(last[a])];
        if (s.queue.empty()) s.m.waiting_since = tp(now);
        s.queue.push_back({now, a});
        next_send[a] = -1;
      }
    // Phases end; requests finish.
    for (std::size_t i = 0; i < ms.size(); ++i) {
      auto& s = ms[i];
      if (s.m.phase == model_phase::loading && now >= s.phase_until) {
        s.m.phase = model_phase::loaded;
        s.m.last_used = tp(now);
      }
      if (s.m.phase == model_phase::stopping && now >= s.phase_until) s.m.phase = model_phase::unloaded;
      for (auto it = s.running.begin(); it != s.running.end();) {
        if (now >= it->first) {
          latencies.push_back(now - it->second.arrived);
          next_send[it->second.agent] = now + think(rng);
          s.m.last_used = tp(now);
          it = s.running.erase(it);
        } else {
          ++it;
        }
      }
      s.m.in_flight = static_cast<int>(s.running.size());
      s.m.queued = static_cast<int>(s.queue.size());
      if (r == rule::restart && s.m.phase == model_phase::loaded && s.served && s.running.empty()) {
        s.served = false;
        stop(s, now);
      }
    }
    // Loads.
    std::vector<od_model> view;
    for (const auto& s : ms) view.push_back(s.m);
    if (r == rule::agifarm) {
      for (auto e : expired(view, tp(now))) stop(ms[e], now);
      for (std::size_t round = 0; round < ms.size(); ++round) {
        for (std::size_t i = 0; i < ms.size(); ++i) view[i] = ms[i].m;
        auto t = next_to_load(view);
        if (!t) break;
        auto d = decide_load(view, *t, cap, tp(now), opt);
        if (d.verdict == od_verdict::start) {
          start(ms[*t], now);
          continue;
        }
        if (d.verdict == od_verdict::evict)
          for (auto v : d.evict) stop(ms[v], now);
        break;
      }
    } else if (r == rule::restart) {
      // Each waiting model starts as soon as it fits beside what runs (nothing is kept).
      for (std::size_t round = 0; round < ms.size(); ++round) {
        for (std::size_t i = 0; i < ms.size(); ++i) view[i] = ms[i].m;
        auto t = next_to_load(view);
        if (!t) break;
        if (!shortfall(held_bytes(view), view[*t].need, cap).empty()) break;
        start(ms[*t], now);
      }
    } else {
      constexpr int k_max = 2;
      for (std::size_t round = 0; round < ms.size(); ++round) {
        for (std::size_t i = 0; i < ms.size(); ++i) view[i] = ms[i].m;
        auto t = next_to_load(view);
        if (!t) break;
        int count = 0;
        for (const auto& m : view) count += m.phase != model_phase::unloaded;
        if (count < k_max) {
          start(ms[*t], now);
          continue;
        }
        std::optional<std::size_t> lru;
        for (std::size_t i = 0; i < view.size(); ++i)
          if (view[i].phase == model_phase::loaded && view[i].in_flight == 0 && view[i].queued == 0 &&
              (!lru || view[i].last_used < view[*lru].last_used))
            lru = i;
        if (lru) stop(ms[*lru], now);
        break;
      }
    }
    // Dispatch queued requests to loaded models.
    for (std::size_t i = 0; i < ms.size(); ++i) {
      auto& s = ms[i];
      if (s.m.phase != model_phase::loaded) continue;
      std::exponential_distribution<double> service(1.0 / k_models[i].service_s);
      while (!s.queue.empty() && static_cast<int>(s.running.size()) < k_models[i].slots) {
        s.running.push_back({now + service(rng), s.queue.front()});
        s.queue.pop_front();
        s.m.last_used = tp(now);
        // Restart per request: the process serves the one request it was started for.
        if (r == rule::restart) {
          s.served = true;
          break;
        }
      }
    }
  }
  result out;
  out.done = latencies.size();
  out.loads = loads;
  out.rps = static_cast<double>(latencies.size()) / seconds;
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    out.p95 = latencies[static_cast<std::size_t>(0.95 * static_cast<double>(latencies.size() - 1))];
    out.loads_per_100 = 100.0 * static_cast<double>(loads) / static_cast<double>(latencies.size());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3600;
  const unsigned seed = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 12;
  std::printf(
      "agent workload: %d agents over %zu models (%.1f GiB in all) on a %.0f GiB budget, %.0f s simulated\n",
      k_agents, k_models.size(), 49.5, k_capacity_gib, seconds);
  const char* names[] = {"agifarm (fit-aware, batch 2 s)", "restart per request", "count LRU (max 2)"};
  result rs[3];
  for (int i = 0; i < 3; ++i) {
    rs[i] = simulate(static_cast<rule>(i), seconds, seed);
    std::printf("%-32s %8.3f req/s  p95 %7.2f s  %6.1f loads/100 req  (%llu requests, %llu loads)\n",
                names[i], rs[i].rps, rs[i].p95, rs[i].loads_per_100,
                static_cast<unsigned long long>(rs[i].done), static_cast<unsigned long long>(rs[i].loads));
  }
  for (int i = 1; i < 3; ++i)
    std::printf("agifarm vs %-22s throughput x%.2f, p95 latency x%.2f, loads x%.2f\n", names[i],
                rs[0].rps / rs[i].rps, rs[0].p95 / rs[i].p95, rs[0].loads_per_100 / rs[i].loads_per_100);
  return 0;
}
