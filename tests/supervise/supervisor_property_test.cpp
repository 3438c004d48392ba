// Scripted property test: random scripts of child exits, probe answers and clock jumps drive the
// supervisor; invariants are checked after every step. Deterministic (seeded), no sleeping.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "supervise/fakes.hpp"
#include "supervise/supervisor.hpp"

namespace agifarm::supervise {
namespace {

using namespace std::chrono_literals;

plan::backend_spec spec(std::string name, plan::backend_kind k, std::vector<std::string> deps = {}) {
  plan::backend_spec b;
  b.name = std::move(name);
  b.kind = k;
  b.depends_on = std::move(deps);
  return b;
}

void run_script(unsigned seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  testing::fake_clock clk;
  testing::fake_launcher procs;
  testing::fake_prober probes;
  testing::fake_files files;
  testing::fake_ports ports;
  supervisor_options o;
  o.log_dir = "/logs";
  o.max_failures = 1 + static_cast<int>(rng() % 6);
  o.backoff_cap = 8s;
  o.failure_window = 60s;
  o.start_timeout = 20s;
  o.probe_interval = 5s;
  o.stop_timeout = 3s;
  o.healthy_reset = 30s;
  plan::deployment d;
  d.backends = {spec("big", plan::backend_kind::llama_server, {"rpc0", "rpc1"}),
                spec("rpc0", plan::backend_kind::rpc_server), spec("rpc1", plan::backend_kind::rpc_server),
                spec("a", plan::backend_kind::llama_server), spec("b", plan::backend_kind::llama_server)};
  supervisor sup(d, o, clk, procs, probes, files, ports);
  ASSERT_TRUE(sup.prepare().ok());

  std::map<std::string, bool> was_failed;
  auto name_of_log = [](const std::string& log) { return log.substr(6, log.size() - 10); };  // /logs/X.log

  auto check = [&](time_point next) {
    ASSERT_GT(next, clk.now()) << "step asked to be woken now or in the past (a spinning loop)";
    std::map<std::string, int> live;
    for (auto& [pid, p] : procs.procs) {
      if (p.alive) ++live[name_of_log(p.req.log_path)];
    }
    for (const auto& b : sup.backends()) {
      bool has_process = b.state == backend_state::starting || b.state == backend_state::ready ||
                         b.state == backend_state::stopping;
      if (has_process) {
        ASSERT_NE(b.pid, 0) << b.name << " " << to_string(b.state);
      } else {
        ASSERT_EQ(b.pid, 0) << b.name << " " << to_string(b.state);
        ASSERT_EQ(live[b.name], 0) << b.name << " has a process left in state " << to_string(b.state);
      }
      ASSERT_LE(live[b.name], 1) << b.name << " has twins";
      if (was_failed[b.name]) {
        ASSERT_EQ(b.state, backend_state::failed) << b.name << " left failed";
      }
      was_failed[b.name] = b.state == backend_state::failed;
      if (b.name == "big" && (b.state == backend_state::starting || b.state == backend_state::ready)) {
        for (const auto& x : sup.backends()) {
          if (x.name.rfind("rpc", 0) == 0) {
            ASSERT_EQ(x.state, backend_state::ready) << "big runs without " << x.name;
          }
        }
      }
      if (b.state == backend_state::failed) {
        ASSERT_FALSE(b.reason.empty()) << b.name;
      }
    }
  };

  std::map<int, time_point> spawned_at;
  // Crash loops are paced: a backend without dependencies is never spawned twice within backoff_initial.
  std::map<std::string, time_point> last_spawn;
  auto note_spawns = [&]() {
    for (int pid : procs.spawn_order) {
      if (spawned_at.count(pid)) continue;
      spawned_at[pid] = clk.now();
      std::string n = name_of_log(procs.procs.at(pid).req.log_path);
      if (n != "big" && last_spawn.count(n)) {
        ASSERT_GE(clk.now() - last_spawn[n], o.backoff_initial) << n << " respawned too fast";
      }
      last_spawn[n] = clk.now();
    }
  };

  auto next = sup.step();
  note_spawns();
  check(next);
  for (int step = 0; step < 400; ++step) {
    switch (rng() % 6) {
      case 0:
      case 1: {  // time passes: sometimes to the next timer, sometimes an arbitrary jump
        if (rng() % 2)
          clk.set(next);
        else
          clk.advance(std::chrono::milliseconds(rng() % 4000));
        break;
      }
      case 2: {  // a random live process dies
        std::vector<int> alive;
        for (auto& [pid, p] : procs.procs) {
          if (p.alive) alive.push_back(pid);
        }
        if (!alive.empty())
          procs.exit(alive[rng() % alive.size()], rng() % 2, 1 + static_cast<int>(rng() % 9));
        break;
      }
      case 3:
      case 4: {  // a pending probe answers
        if (!probes.pending.empty()) {
          auto r = probes.pending[rng() % probes.pending.size()];
          static const probe_outcome outs[] = {
              probe_outcome::ok,      probe_outcome::ok,      probe_outcome::ok,   probe_outcome::loading,
              probe_outcome::refused, probe_outcome::timeout, probe_outcome::busy, probe_outcome::error};
          probes.answer(r.backend, r.kind, outs[rng() % 8]);
        }
        break;
      }
      case 5:
        procs.term_exits = rng() % 4 != 0;
        break;
    }
    next = sup.step();
    note_spawns();
    check(next);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Shutdown always ends with nothing running, even when processes ignore SIGTERM.
  sup.stop_all();
  for (int i = 0; i < 100 && !sup.all_stopped(); ++i) {
    next = sup.step();
    check(next);
    if (::testing::Test::HasFatalFailure()) return;
    clk.set(next);
  }
  EXPECT_TRUE(sup.all_stopped());
  EXPECT_EQ(procs.live(), 0);
}

TEST(supervisor_property, random_scripts_keep_the_invariants) {
  for (unsigned seed = 1; seed <= 300; ++seed) {
    run_script(seed);
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace agifarm::supervise
