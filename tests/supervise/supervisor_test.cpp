// Unit tests of the supervisor's state machine with a fake clock, fake processes and a fake prober.
// Nothing here sleeps: time moves only when a test advances the fake clock.
#include "supervise/supervisor.hpp"

#include <gtest/gtest.h>

#include "supervise/fakes.hpp"

namespace agifarm::supervise {
namespace {

using namespace std::chrono_literals;
using testing::fake_clock;
using testing::fake_files;
using testing::fake_launcher;
using testing::fake_ports;
using testing::fake_prober;

plan::backend_spec llama(std::string name, std::vector<std::string> deps = {}) {
  plan::backend_spec b;
  b.name = std::move(name);
  b.kind = plan::backend_kind::llama_server;
  b.model = "tiny";
  b.model_file = "/models/tiny.gguf";
  b.args = {"-m", "/models/tiny.gguf", "-c", "2048", "-np", "2"};
  b.depends_on = std::move(deps);
  return b;
}

plan::backend_spec rpc(std::string name) {
  plan::backend_spec b;
  b.name = std::move(name);
  b.kind = plan::backend_kind::rpc_server;
  return b;
}

struct harness {
  fake_clock clk;
  fake_launcher procs;
  fake_prober probes;
  fake_files files;
  fake_ports ports;
  std::vector<std::pair<std::string, backend_state>> changes;
  supervisor_options opts;
  std::unique_ptr<supervisor> sup;

  harness() {
    opts.llama_bin = "/opt/llama/bin";
    opts.log_dir = "/state/logs";
    opts.max_failures = 5;
    opts.failure_window = 600s;
  }
  void make(std::vector<plan::backend_spec> backends) {
    plan::deployment d;
    d.strategy = "replica";
    d.backends = std::move(backends);
    supervisor_events ev;
    ev.on_change = [this](const backend_status& s) { changes.emplace_back(s.name, s.state); };
    sup = std::make_unique<supervisor>(d, opts, clk, procs, probes, files, ports, ev);
    auto st = sup->prepare();
    ASSERT_TRUE(st.ok()) << st.err().message;
  }
  const backend_status& get(const std::string& name) const {
    for (auto& b : sup->backends())
      if (b.name == name) return b;
    throw std::runtime_error("no backend " + name);
  }
  backend_state state(const std::string& name) const { return get(name).state; }
  time_point step() { return sup->step(); }
  // Advances the clock to the next timer the supervisor asked for and steps.
  void run_for(duration d) {
    auto end = clk.now() + d;
    for (;;) {
      auto next = sup->step();
      if (next > end) {
        clk.set(end);
        sup->step();
        return;
      }
      clk.set(next);
    }
  }
  // Steps until the backend has a pending probe of that kind, answers it, steps once more.
  // Only requests of the current process count (tag == its spawn number == restarts + 1).
  void answer(const std::string& name, probe_kind k, probe_outcome o) {
    auto current = [&] {
      auto gen = static_cast<std::uint64_t>(get(name).restarts + 1);
      return std::any_of(probes.pending.begin(), probes.pending.end(),
                         [&](auto& r) { return r.backend == name && r.kind == k && r.tag == gen; });
    };
    for (int i = 0; i < 100 && !current(); ++i) clk.set(sup->step());
    ASSERT_TRUE(current()) << "no " << to_string(k) << " probe for " << name;
    ASSERT_TRUE(probes.answer(name, k, o));
    step();
  }
  void make_ready(const std::string& name) {
    answer(name, get(name).kind == plan::backend_kind::rpc_server ? probe_kind::tcp : probe_kind::health,
           probe_outcome::ok);
    ASSERT_EQ(state(name), backend_state::ready);
  }
  void crash(const std::string& name, int code = 1) {
    procs.exit(get(name).pid, false, code);
    step();
  }
};

TEST(supervisor, starts_with_exactly_backend_argv_and_dependencies_first) {
  harness h;
  // The llama-server is listed first but depends on both rpc servers.
  h.make({llama("big", {"rpc0", "rpc1"}), rpc("rpc0"), rpc("rpc1")});
  h.step();
  EXPECT_EQ(h.state("rpc0"), backend_state::starting);
  EXPECT_EQ(h.state("rpc1"), backend_state::starting);
  EXPECT_EQ(h.state("big"), backend_state::waiting);
  EXPECT_EQ(h.procs.live(), 2);
  h.make_ready("rpc0");
  EXPECT_EQ(h.state("big"), backend_state::waiting);  // rpc1 not ready yet
  h.make_ready("rpc1");
  ASSERT_EQ(h.state("big"), backend_state::starting);
  const auto& b = h.get("big");
  auto want = plan::backend_argv(h.sup->deployment().backends.back(), "/opt/llama/bin", b.port);
  EXPECT_EQ(h.procs.procs.at(b.pid).req.argv, want);
  EXPECT_EQ(h.procs.procs.at(b.pid).req.log_path, "/state/logs/big.log");
  // Ports are distinct and non-zero.
  EXPECT_NE(h.get("rpc0").port, h.get("rpc1").port);
  EXPECT_NE(h.get("rpc0").port, b.port);
}

TEST(supervisor, ready_only_on_health_200_not_while_loading) {
  harness h;
  h.make({llama("a")});
  h.step();
  h.answer("a", probe_kind::health, probe_outcome::loading);
  EXPECT_EQ(h.state("a"), backend_state::starting);
  h.answer("a", probe_kind::health, probe_outcome::refused);
  EXPECT_EQ(h.state("a"), backend_state::starting);
  h.answer("a", probe_kind::health, probe_outcome::ok);
  EXPECT_EQ(h.state("a"), backend_state::ready);
  EXPECT_TRUE(h.sup->all_settled());
}

TEST(supervisor, crash_restarts_with_exponential_backoff_up_to_the_cap) {
  harness h;
  h.opts.backoff_cap = 4s;
  h.opts.max_failures = 100;
  h.make({llama("a")});
  h.step();
  h.make_ready("a");
  std::vector<duration> expected{1s, 2s, 4s, 4s, 4s};
  for (auto want : expected) {
    int pid = h.get("a").pid;
    h.crash("a");
    ASSERT_EQ(h.state("a"), backend_state::backoff);
    EXPECT_FALSE(h.procs.alive(pid));
    auto crashed_at = h.clk.now();
    EXPECT_EQ(h.get("a").next_start - crashed_at, want);
    h.clk.advance(want - 1ms);
    h.step();
    EXPECT_EQ(h.state("a"), backend_state::backoff) << "restarted before its backoff";
    h.clk.advance(1ms);
    h.step();
    ASSERT_EQ(h.state("a"), backend_state::starting);
    EXPECT_NE(h.get("a").pid, pid);
  }
  EXPECT_EQ(h.get("a").restarts, 5);
  EXPECT_NE(h.get("a").reason.find("exit status 1"), std::string::npos) << h.get("a").reason;
}

TEST(supervisor, too_many_failures_mark_failed_with_the_log_reason_and_stop_spawning) {
  harness h;
  h.opts.max_failures = 3;
  h.make({llama("a"), llama("b")});
  h.step();
  h.make_ready("b");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(h.state("a"), backend_state::starting) << i;
    h.files.append_line("/state/logs/a.log", "llama_model_load: loading tensors");
    h.files.append_line(
        "/state/logs/a.log",
        "ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 9999999");
    h.files.append_line("/state/logs/a.log", "main: exiting due to model loading error");
    h.crash("a");
    if (i < 2) h.run_for(10s);
  }
  EXPECT_EQ(h.state("a"), backend_state::failed);
  EXPECT_NE(h.get("a").reason.find("failed to allocate buffer of size 9999999"), std::string::npos)
      << h.get("a").reason;
  EXPECT_FALSE(h.get("a").log_tail.empty());
  int spawned = static_cast<int>(h.procs.procs.size());
  h.run_for(3600s);
  EXPECT_EQ(static_cast<int>(h.procs.procs.size()), spawned) << "a failed backend was started again";
  EXPECT_EQ(h.state("b"), backend_state::ready) << "one failing backend took another down";
  EXPECT_TRUE(h.sup->all_settled());
}

TEST(supervisor, failure_reason_prefers_error_lines) {
  EXPECT_EQ(failure_reason({"a", "error: invalid argument: --bogus", "usage: ...", ""}),
            "error: invalid argument: --bogus");
  EXPECT_EQ(failure_reason({"one", "two", ""}), "");
  EXPECT_EQ(failure_reason({"error: old run", "[agifarm] start #2: llama-server", "fine"}), "");
  EXPECT_EQ(failure_reason(
                {"x", "0.00.035.277 E alloc: failed to allocate buffer", "E main: exiting due to error"}),
            "alloc: failed to allocate buffer");
  EXPECT_EQ(failure_reason({}), "");
}

TEST(supervisor, backoff_and_failures_reset_after_a_long_healthy_run) {
  harness h;
  h.opts.healthy_reset = 60s;
  h.opts.probe_interval = 0s;
  h.make({llama("a")});
  h.step();
  h.make_ready("a");
  for (int i = 0; i < 3; ++i) {  // backoff grows to 8 s
    h.crash("a");
    h.run_for(std::chrono::duration_cast<duration>(h.get("a").next_start - h.clk.now()));
    h.make_ready("a");
  }
  h.run_for(61s);
  for (int i = 0; i < 60; ++i) h.answer("a", probe_kind::health, probe_outcome::ok);
  h.crash("a");
  EXPECT_EQ(h.get("a").next_start - h.clk.now(), 1s);
  EXPECT_EQ(h.get("a").failures, 1);
}

TEST(supervisor, start_timeout_kills_and_counts_a_failure) {
  harness h;
  h.opts.start_timeout = 30s;
  h.make({llama("a")});
  h.step();
  int pid = h.get("a").pid;
  h.run_for(31s);  // health probes stay unanswered (like a server stuck loading)
  EXPECT_FALSE(h.procs.alive(pid));
  EXPECT_EQ(h.procs.procs.at(pid).signals.front(), SIGTERM);
  EXPECT_EQ(h.state("a"), backend_state::backoff);
  EXPECT_NE(h.get("a").reason.find("start timeout"), std::string::npos) << h.get("a").reason;
}

TEST(supervisor, wedged_backend_is_found_by_the_completion_probe_and_restarted) {
  harness h;
  h.opts.probe_interval = 10s;
  h.opts.probe_failures_to_restart = 2;
  h.make({llama("a")});
  h.step();
  h.make_ready("a");
  int pid = h.get("a").pid;
  // Busy is not wedged.
  h.answer("a", probe_kind::completion, probe_outcome::busy);
  h.answer("a", probe_kind::completion, probe_outcome::busy);
  h.answer("a", probe_kind::completion, probe_outcome::busy);
  EXPECT_EQ(h.state("a"), backend_state::ready);
  h.answer("a", probe_kind::completion, probe_outcome::timeout);
  EXPECT_EQ(h.state("a"), backend_state::ready);
  h.answer("a", probe_kind::completion, probe_outcome::ok);  // resets the count
  h.answer("a", probe_kind::completion, probe_outcome::timeout);
  EXPECT_EQ(h.state("a"), backend_state::ready);
  h.answer("a", probe_kind::completion, probe_outcome::timeout);
  EXPECT_EQ(h.state("a"), backend_state::stopping);
  EXPECT_EQ(h.procs.procs.at(pid).signals, std::vector<int>{SIGTERM});
  h.step();  // the process exits on SIGTERM
  EXPECT_FALSE(h.procs.alive(pid));
  EXPECT_EQ(h.state("a"), backend_state::backoff);
  EXPECT_NE(h.get("a").reason.find("wedged"), std::string::npos) << h.get("a").reason;
  h.run_for(2s);
  EXPECT_EQ(h.state("a"), backend_state::starting);
}

TEST(supervisor, wedged_process_ignoring_sigterm_gets_sigkill) {
  harness h;
  h.opts.stop_timeout = 5s;
  h.make({llama("a")});
  h.step();
  h.make_ready("a");
  h.procs.term_exits = false;
  int pid = h.get("a").pid;
  for (int i = 0; i < 3; ++i) h.answer("a", probe_kind::health, probe_outcome::timeout);
  EXPECT_EQ(h.state("a"), backend_state::stopping);
  h.run_for(4900ms);
  EXPECT_TRUE(h.procs.alive(pid));
  h.run_for(200ms);
  EXPECT_FALSE(h.procs.alive(pid));
  EXPECT_EQ(h.procs.procs.at(pid).signals, (std::vector<int>{SIGTERM, SIGKILL}));
}

TEST(supervisor, stop_all_stops_dependents_first_then_everything) {
  harness h;
  h.make({rpc("rpc0"), llama("big", {"rpc0"}), llama("small")});
  h.step();
  h.make_ready("rpc0");
  h.make_ready("big");
  h.make_ready("small");
  h.procs.term_exits = false;
  h.sup->stop_all();
  EXPECT_TRUE(h.procs.procs.at(h.get("rpc0").pid).signals.empty()) << "rpc server stopped before its user";
  EXPECT_EQ(h.procs.procs.at(h.get("big").pid).signals, std::vector<int>{SIGTERM});
  h.procs.exit(h.get("big").pid, true, SIGTERM);
  h.procs.exit(h.get("small").pid, false, 0);
  h.step();
  EXPECT_EQ(h.state("big"), backend_state::stopped);
  EXPECT_EQ(h.procs.procs.at(h.get("rpc0").pid).signals, std::vector<int>{SIGTERM});
  h.run_for(30s);  // rpc0 ignores SIGTERM: SIGKILL after stop_timeout
  EXPECT_TRUE(h.sup->all_stopped());
  EXPECT_EQ(h.procs.live(), 0);
}

TEST(supervisor, dependency_crash_restarts_dependents_without_counting_a_failure) {
  harness h;
  h.make({rpc("rpc0"), llama("big", {"rpc0"})});
  h.step();
  h.make_ready("rpc0");
  h.make_ready("big");
  int big_pid = h.get("big").pid;
  h.crash("rpc0");
  EXPECT_EQ(h.state("big"), backend_state::stopping);
  h.step();
  EXPECT_FALSE(h.procs.alive(big_pid));
  EXPECT_EQ(h.state("big"), backend_state::waiting);
  EXPECT_EQ(h.get("big").failures, 0);
  h.run_for(1s);
  h.make_ready("rpc0");
  EXPECT_EQ(h.state("big"), backend_state::starting);
}

TEST(supervisor, failed_dependency_fails_its_dependents) {
  harness h;
  h.opts.max_failures = 1;
  h.make({rpc("rpc0"), llama("big", {"rpc0"})});
  h.step();
  h.crash("rpc0");
  EXPECT_EQ(h.state("rpc0"), backend_state::failed);
  EXPECT_EQ(h.state("big"), backend_state::failed);
  EXPECT_NE(h.get("big").reason.find("rpc0"), std::string::npos);
}

TEST(supervisor, spawn_error_is_a_failure_with_its_message) {
  harness h;
  h.opts.max_failures = 2;
  h.procs.spawn_error = "cannot execute /opt/llama/bin/llama-server: No such file or directory";
  h.make({llama("a")});
  h.step();
  EXPECT_EQ(h.state("a"), backend_state::backoff);
  h.run_for(5s);
  EXPECT_EQ(h.state("a"), backend_state::failed);
  EXPECT_NE(h.get("a").reason.find("No such file"), std::string::npos) << h.get("a").reason;
}

TEST(supervisor, a_chosen_port_taken_before_restart_moves_to_a_free_one) {
  harness h;
  h.make({llama("a"), llama("b")});
  h.step();
  h.make_ready("a");
  h.make_ready("b");
  int old_port = h.get("a").port;
  h.ports.busy.insert(old_port);
  h.crash("a");
  h.run_for(1s);
  EXPECT_EQ(h.state("a"), backend_state::starting);
  EXPECT_NE(h.get("a").port, old_port);
  EXPECT_NE(h.get("a").port, h.get("b").port);
  EXPECT_NE(h.get("a").reason.find("moved to port"), std::string::npos) << h.get("a").reason;
  // The process is started on the new port.
  auto want = plan::backend_argv(h.sup->deployment().backends[0], "/opt/llama/bin", h.get("a").port);
  EXPECT_EQ(h.procs.procs.at(h.get("a").pid).req.argv, want);
}

TEST(supervisor, a_fixed_port_taken_before_restart_is_reported) {
  harness h;
  auto a = llama("a");
  a.port = 18080;
  h.make({a});
  h.step();
  h.make_ready("a");
  h.ports.busy.insert(18080);
  h.crash("a");
  h.run_for(1s);
  EXPECT_EQ(h.state("a"), backend_state::backoff);
  EXPECT_EQ(h.get("a").port, 18080);
  EXPECT_NE(h.get("a").reason.find("in use"), std::string::npos) << h.get("a").reason;
}

TEST(supervisor, an_rpc_server_whose_port_others_name_does_not_move) {
  harness h;
  h.make({rpc("r"), llama("a", {"r"})});
  h.step();
  h.make_ready("r");
  int old_port = h.get("r").port;
  h.ports.busy.insert(old_port);
  h.crash("r");
  h.run_for(1s);
  EXPECT_EQ(h.get("r").port, old_port);
  EXPECT_NE(h.get("r").reason.find("in use"), std::string::npos) << h.get("r").reason;
}

TEST(supervisor, prepare_rejects_bad_deployments) {
  fake_clock clk;
  fake_launcher procs;
  fake_prober probes;
  fake_files files;
  fake_ports ports;
  auto check = [&](std::vector<plan::backend_spec> bs, const std::string& needle) {
    plan::deployment d;
    d.backends = std::move(bs);
    supervisor s(d, {}, clk, procs, probes, files, ports);
    auto st = s.prepare();
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.err().message.find(needle), std::string::npos) << st.err().message;
  };
  check({llama("a", {"nope"})}, "unknown backend 'nope'");
  check({llama("a", {"b"}), llama("b", {"a"})}, "cycle");
  check({llama("a"), llama("a")}, "listed twice");
  auto fixed = llama("a");
  fixed.port = 8081;
  ports.busy.insert(8081);
  check({fixed}, "port 8081");
}

TEST(supervisor, stale_probe_results_from_an_earlier_process_are_ignored) {
  harness h;
  h.make({llama("a")});
  h.step();
  for (int i = 0; i < 100 && !h.probes.has_pending("a", probe_kind::health); ++i) h.clk.set(h.step());
  auto old = h.probes.pending.front();
  h.crash("a");
  h.run_for(1s);
  ASSERT_EQ(h.state("a"), backend_state::starting);
  h.probes.pending.push_back(old);  // the old process's probe answers late
  ASSERT_TRUE(h.probes.answer("a", probe_kind::health, probe_outcome::ok));
  h.step();
  EXPECT_EQ(h.state("a"), backend_state::starting);
}

TEST(supervisor, step_never_asks_to_be_woken_in_the_past) {
  harness h;
  h.make({llama("a"), rpc("r")});
  for (int i = 0; i < 200; ++i) {
    auto next = h.step();
    ASSERT_GT(next, h.clk.now());
    h.clk.set(next);
    if (i % 7 == 0 && h.get("a").pid) h.crash("a");
  }
}

TEST(supervisor, on_demand_backends_start_only_when_asked_and_stop_without_counting_a_crash) {
  harness h;
  h.opts.on_demand = {"od"};
  h.make({llama("always"), llama("od")});
  h.step();
  EXPECT_EQ(h.state("always"), backend_state::starting);
  EXPECT_EQ(h.state("od"), backend_state::stopped);
  EXPECT_EQ(h.procs.live(), 1);
  h.make_ready("always");
  EXPECT_TRUE(h.sup->all_settled());  // a stopped on-demand backend does not hold start-up back
  ASSERT_TRUE(h.sup->start_backend("od").ok());
  EXPECT_EQ(h.state("od"), backend_state::starting);
  ASSERT_TRUE(h.sup->start_backend("od").ok());  // already starting: no second process
  EXPECT_EQ(h.procs.live(), 2);
  h.make_ready("od");
  ASSERT_TRUE(h.sup->stop_backend("od", "evicted for big").ok());
  EXPECT_EQ(h.state("od"), backend_state::stopping);
  h.step();
  EXPECT_EQ(h.state("od"), backend_state::stopped);
  EXPECT_EQ(h.get("od").pid, 0);
  EXPECT_EQ(h.get("od").failures, 0);
  EXPECT_EQ(h.procs.live(), 1);
  h.run_for(30s);
  EXPECT_EQ(h.state("od"), backend_state::stopped);  // stays down: no restart, no backoff
  ASSERT_TRUE(h.sup->start_backend("od").ok());
  EXPECT_EQ(h.state("od"), backend_state::starting);
  EXPECT_EQ(h.get("od").restarts, 1);
  EXPECT_FALSE(h.sup->start_backend("nope").ok());
  EXPECT_FALSE(h.sup->stop_backend("nope", "x").ok());
}

}  // namespace
}  // namespace agifarm::supervise
