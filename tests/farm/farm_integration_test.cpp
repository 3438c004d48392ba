// Integration tests of `agifarm up / status / down / logs` with real llama-server processes on the
// tiny model, the real gateway and real HTTP clients. Every wait is on a condition with a deadline.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "support/support.hpp"

namespace agifarm {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

bool alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(f, s);
  auto rp = s.rfind(')');
  return rp == std::string::npos || rp + 2 >= s.size() || (s[rp + 2] != 'Z' && s[rp + 2] != 'X');
}

struct farm_fixture {
  std::string dir;
  int port = 0;
  explicit farm_fixture(const std::string& name) : dir(test::temp_dir(name)), port(test::free_port()) {}
  ~farm_fixture() {  // never leave a farm behind, even when a test fails
    test::run({test::agifarm_cli(), "down", "--state-dir", dir, "--timeout", "20"}, 60s);
  }
  test::run_result cli(std::vector<std::string> args, std::chrono::seconds timeout = 180s) const {
    std::vector<std::string> argv{test::agifarm_cli()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run(argv, timeout);
  }
  test::run_result up(const std::string& farm_file = "") const {
    std::vector<std::string> a{"up", "--detach", "--state-dir",
                               dir,  "--listen", "127.0.0.1:" + std::to_string(port)};
    if (!farm_file.empty()) a.push_back(farm_file);
    return cli(a);
  }
  std::vector<std::string> up_argv(const std::string& farm_file) const {
    return {test::agifarm_cli(),
            "up",
            farm_file,
            "--state-dir",
            dir,
            "--listen",
            "127.0.0.1:" + std::to_string(port)};
  }
  std::optional<json::object> status() const {
    auto r = cli({"status", "--json", "--state-dir", dir}, 30s);
    boost::system::error_code ec;
    auto v = json::parse(r.output, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return v.as_object();
  }
  std::map<std::string, json::object> backends() const {
    std::map<std::string, json::object> out;
    auto s = status();
    if (!s || !s->contains("backends")) return out;
    for (auto& b : s->at("backends").as_array()) out[std::string(b.at("name").as_string())] = b.as_object();
    return out;
  }
  test::http_response chat(const std::string& model, std::chrono::milliseconds timeout = 60s) const {
    return test::http_request(
        port, "POST", "/v1/chat/completions",
        R"({"model":")" + model + R"(","messages":[{"role":"user","content":"Hello"}],"max_tokens":8})",
        {{"Content-Type", "application/json"}}, timeout);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = dir + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
};

std::string str(const json::object& o, const char* k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
int num(const json::object& o, const char* k) {
  auto* v = o.if_contains(k);
  return v && v->is_int64() ? static_cast<int>(v->as_int64()) : 0;
}

// Whether the backend's log shows a finished request (llama-server's print_timing) after the
// supervisor's "[agifarm] start #N" marker, i.e. the N-th process served something.
bool served_since_start(const std::string& log_path, int start) {
  std::ifstream in(log_path);
  const std::string marker = "[agifarm] start #" + std::to_string(start) + ":";
  bool after_marker = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(marker, 0) == 0) after_marker = true;
    if (after_marker && line.find("print_timing") != std::string::npos) return true;
  }
  return false;
}

std::string two_replica_farm(const std::string& extra = "") {
  return "models:\n  tiny: {file: " + test::tiny_model() +
         ", replicas: 2, args: [\"-t\", \"1\"]}\n"
         "roles:\n  fast: {model: tiny, ctx: 1024, agents: 2}\n  code: {model: tiny}\nstrategy: replica\n" +
         extra;
}

TEST(farm_up, embedded_default_answers_status_reports_and_down_leaves_no_process) {
  farm_fixture f("farm-default");
  auto up = f.up();
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("http://127.0.0.1:" + std::to_string(f.port) + "/v1"), std::string::npos)
      << up.output;
  EXPECT_NE(up.output.find("curl"), std::string::npos);
  EXPECT_NE(up.output.find("roles fast, code, think"), std::string::npos) << up.output;

  for (const char* alias : {"fast", "code", "think", "tiny-qwen3"}) {
    auto r = f.chat(alias);
    ASSERT_EQ(r.status, 200) << alias << ": " << r.body;
    EXPECT_NE(r.body.find("\"choices\""), std::string::npos) << r.body;
  }
  auto s = f.status();
  ASSERT_TRUE(s) << "status --json did not print JSON";
  EXPECT_TRUE(s->at("running").as_bool());
  int supervisor = num(*s, "supervisor_pid");
  EXPECT_TRUE(alive(supervisor));
  auto bs = f.backends();
  ASSERT_EQ(bs.size(), 2u);
  std::vector<int> pids{supervisor};
  for (auto& [name, b] : bs) {
    EXPECT_EQ(str(b, "state"), "ready") << name;
    EXPECT_TRUE(alive(num(b, "pid"))) << name;
    EXPECT_GT(b.at("rss_bytes").to_number<double>(), 0) << name;
    EXPECT_TRUE(b.at("in_flight").is_int64()) << name << " in_flight from /slots";
    pids.push_back(num(b, "pid"));
  }
  auto human = f.cli({"status", "--state-dir", f.dir});
  EXPECT_EQ(human.exit_code, 0);
  EXPECT_NE(human.output.find("tiny-qwen3-r0"), std::string::npos) << human.output;
  auto logs = f.cli({"logs", "tiny-qwen3-r0", "--state-dir", f.dir, "-n", "500"});
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_NE(logs.output.find("llama-server"), std::string::npos) << logs.output;

  // A second `up` reports the running farm and starts nothing.
  auto again = f.up();
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("already running"), std::string::npos) << again.output;
  auto after = f.backends();
  for (auto& [name, b] : after)
    EXPECT_EQ(num(b, "pid"), num(bs[name], "pid")) << name << " was restarted by a twin";
  EXPECT_EQ(f.chat("fast").status, 200);

  auto down = f.cli({"down", "--state-dir", f.dir});
  EXPECT_EQ(down.exit_code, 0) << down.output;
  for (int pid : pids) EXPECT_FALSE(alive(pid)) << "pid " << pid << " left behind by down";
  EXPECT_FALSE(fs::exists(f.dir + "/farm.json"));
  EXPECT_EQ(f.cli({"status", "--state-dir", f.dir}).exit_code, 1);
  EXPECT_EQ(f.chat("fast", 2s).status, 0) << "the gateway still answers after down";
}

TEST(farm_up, kill_9_a_backend_while_requests_flow_farm_keeps_answering) {
  farm_fixture f("farm-kill9");
  auto file =
      f.write("farm.yaml", two_replica_farm("supervisor: {backoff_initial_s: 1, health_interval_s: 0.5}\n"));
  auto up = f.up(file);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  auto bs = f.backends();
  ASSERT_EQ(bs.size(), 2u);
  int victim = num(bs["tiny-r0"], "pid");
  ASSERT_TRUE(alive(victim));

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, bad{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c)
    clients.emplace_back([&] {
      while (!stop) {
        auto r = f.chat("fast", 60s);
        if (r.status == 200)
          ++ok;
        else {
          ++bad;
          std::lock_guard lk(mu);
          failures.push_back(std::to_string(r.status) + " " + r.body.substr(0, 200));
        }
      }
    });
  ASSERT_TRUE(test::wait_until([&] { return ok >= 6; }, 60s));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  // The gateway takes the replica out of rotation ...
  auto metric = [&](const std::string& needle) {
    auto m = test::http_request(f.port, "GET", "/metrics", "", {}, 5s);
    return m.body.find(needle) != std::string::npos;
  };
  EXPECT_TRUE(test::wait_until([&] { return metric("agifarm_gateway_replica_ready{replica=\"tiny-r0\"} 0"); },
                               10s, 20ms))
      << "tiny-r0 was not taken out of rotation";
  // ... the supervisor restarts it, and it comes back.
  int reborn = 0;
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto b = f.backends()["tiny-r0"];
        reborn = num(b, "pid");
        return str(b, "state") == "ready" && reborn != victim && reborn > 0;
      },
      90s, 200ms))
      << "tiny-r0 was not restarted";
  EXPECT_TRUE(
      test::wait_until([&] { return metric("agifarm_gateway_replica_ready{replica=\"tiny-r0\"} 1"); }, 10s));
  EXPECT_FALSE(alive(victim));
  EXPECT_EQ(num(f.backends()["tiny-r0"], "restarts"), 1);
  // The restarted replica gets traffic again.
  auto log_path = f.dir + "/logs/tiny-r0.log";
  auto served_since_restart = [&] { return served_since_start(log_path, 2); };
  EXPECT_TRUE(test::wait_until(served_since_restart, 60s, 100ms))
      << "no request reached the restarted replica\n--- gateway metrics:\n"
      << test::http_request(f.port, "GET", "/metrics", "", {}, 5s).body << "\n--- tiny-r0 log (tail):\n"
      << f.cli({"logs", "tiny-r0", "--state-dir", f.dir, "-n", "40"}).output << "\n--- daemon log (tail):\n"
      << f.cli({"logs", "agifarm", "--state-dir", f.dir, "-n", "60"}).output;
  int before = ok;
  EXPECT_TRUE(test::wait_until([&] { return ok >= before + 3; }, 60s));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(bad.load(), 0) << "requests failed while a replica was down: "
                           << (failures.empty() ? "" : failures[0]);
  EXPECT_GE(ok.load(), 9);
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
  EXPECT_FALSE(alive(reborn));
}

// Another program takes a backend's port while it is down (on a busy machine a freed port is soon
// handed out again). The supervisor restarts the backend on a new port and the gateway follows it.
TEST(farm_up, a_port_taken_while_a_backend_restarts_moves_the_backend_and_the_gateway_follows) {
  farm_fixture f("farm-port-taken");
  auto file =
      f.write("farm.yaml", two_replica_farm("supervisor: {backoff_initial_s: 1, health_interval_s: 0.5}\n"));
  auto up = f.up(file);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  auto bs = f.backends();
  ASSERT_EQ(bs.size(), 2u);
  int victim = num(bs["tiny-r0"], "pid");
  int old_port = num(bs["tiny-r0"], "port");
  ASSERT_GT(old_port, 0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  // Squat on the port as soon as the dead process has released it (within the 1 s backoff).
  int squatter = -1;
  ASSERT_TRUE(test::wait_until(
      [&] {
        squatter = test::listen_on(old_port);
        return squatter >= 0;
      },
      5s, 5ms))
      << "port " << old_port << " was not released";
  int moved_to = 0;
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto b = f.backends()["tiny-r0"];
        moved_to = num(b, "port");
        return str(b, "state") == "ready" && moved_to != old_port && moved_to > 0;
      },
      90s, 200ms))
      << "tiny-r0 did not come back on another port\n"
      << f.cli({"logs", "agifarm", "--state-dir", f.dir}).output;
  // The gateway sends traffic to the new port: requests keep succeeding and the restarted process serves
  // some.
  auto log_path = f.dir + "/logs/tiny-r0.log";
  auto served_since_restart = [&] { return served_since_start(log_path, 2); };
  int ok = 0;
  for (int i = 0; i < 40 && !served_since_restart(); ++i) ok += f.chat("fast").status == 200;
  EXPECT_TRUE(served_since_restart()) << "no request reached tiny-r0 on its new port " << moved_to;
  EXPECT_GT(ok, 0);
  ::close(squatter);
}

TEST(farm_up, backends_that_cannot_start_are_reported_with_their_log_and_the_farm_runs) {
  farm_fixture f("farm-bad");
  auto tiny = test::tiny_model();
  auto file = f.write("farm.yaml",
                      "models:\n"
                      "  tiny: {file: " +
                          tiny +
                          ", args: [\"-t\", \"1\"]}\n"
                          "  missing: /nonexistent/dir/missing.gguf\n"
                          "  badarg: {file: " +
                          tiny +
                          ", args: [\"--no-such-flag\"]}\n"
                          "roles:\n  fast: {model: tiny}\n  lost: {model: missing}\n  odd: {model: badarg}\n"
                          "strategy: replica\n"
                          "supervisor: {max_failures: 2, backoff_initial_s: 0.2}\n");
  auto up = f.up(file);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  // `up` returns once every backend had its first try: the broken ones are reported with their cause.
  EXPECT_NE(up.output.find("missing.gguf' (No such file or directory)"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("invalid argument: --no-such-flag"), std::string::npos) << up.output;
  std::map<std::string, json::object> bs;
  ASSERT_TRUE(test::wait_until(
      [&] {
        bs = f.backends();
        return str(bs["missing-r0"], "state") == "failed" && str(bs["badarg-r0"], "state") == "failed";
      },
      60s, 200ms))
      << "the broken backends were not marked failed";
  ASSERT_EQ(bs.size(), 3u);
  EXPECT_EQ(str(bs["tiny-r0"], "state"), "ready");
  EXPECT_NE(str(bs["missing-r0"], "reason")
                .find("failed to open GGUF file '/nonexistent/dir/missing.gguf' (No such file"),
            std::string::npos)
      << str(bs["missing-r0"], "reason");
  EXPECT_NE(str(bs["badarg-r0"], "reason").find("invalid argument: --no-such-flag"), std::string::npos)
      << str(bs["badarg-r0"], "reason");
  auto daemon_log = f.cli({"logs", "agifarm", "--state-dir", f.dir, "-n", "300"});
  EXPECT_NE(daemon_log.output.find("last lines of"), std::string::npos) << daemon_log.output;
  EXPECT_EQ(num(bs["missing-r0"], "pid"), 0);
  auto good = f.chat("fast");
  EXPECT_EQ(good.status, 200) << good.body;
  auto lost = f.chat("lost", 40s);
  EXPECT_EQ(lost.status, 503) << lost.body;
  auto st = f.cli({"status", "--state-dir", f.dir});
  EXPECT_NE(st.output.find("No such file or directory"), std::string::npos) << st.output;
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
}

TEST(farm_up, busy_gateway_port_is_refused_and_a_crash_loop_does_not_hold_the_farm_back) {
  farm_fixture f("farm-busy");
  auto file = f.write("farm.yaml",
                      "models:\n  tiny: {file: " + test::tiny_model() +
                          ", args: [\"-t\", \"1\"]}\n"
                          "  missing: /nonexistent/m.gguf\n"
                          "roles:\n  fast: {model: tiny}\n  lost: {model: missing}\nstrategy: replica\n"
                          "supervisor: {max_failures: 1000, backoff_initial_s: 0.2, backoff_cap_s: 0.5}\n");
  {
    test::child holder(
        {"/usr/bin/python3", "-c",
         "import socket,time; s=socket.socket(); s.bind(('127.0.0.1'," + std::to_string(f.port) +
             ")); s.listen(); print('listening', flush=True); time.sleep(120)"},
        f.dir + "/holder.out");
    ASSERT_TRUE(test::wait_until([&] { return holder.log().find("listening") != std::string::npos; }, 20s));
    auto up = f.up(file);
    EXPECT_EQ(up.exit_code, 1) << up.output;
    EXPECT_NE(up.output.find("already in use"), std::string::npos) << up.output;
    EXPECT_FALSE(fs::exists(f.dir + "/farm.json"))
        << "backends were started although the gateway cannot listen";
  }
  ASSERT_TRUE(
      test::wait_until([&] { return test::http_request(f.port, "GET", "/", "", {}, 1s).status == 0; }, 20s));
  auto up = f.up(file);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_EQ(f.chat("fast").status, 200);
  int restarts = 0;
  EXPECT_TRUE(test::wait_until(
      [&] {
        restarts = num(f.backends()["missing-r0"], "restarts");
        return restarts >= 3;
      },
      60s, 200ms))
      << "the crash-looping backend is not being retried";
  EXPECT_NE(str(f.backends()["missing-r0"], "state"), "ready");
  EXPECT_EQ(f.chat("fast").status, 200);
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
}

TEST(farm_up, a_farm_where_nothing_starts_exits_non_zero_with_the_reason_and_leaves_nothing) {
  farm_fixture f("farm-none");
  auto file = f.write("farm.yaml",
                      "models:\n  missing: /nonexistent/m.gguf\nroles:\n  fast: {model: missing}\n"
                      "strategy: replica\nsupervisor: {max_failures: 1}\n");
  auto up = f.up(file);
  EXPECT_EQ(up.exit_code, 1) << up.output;
  EXPECT_NE(up.output.find("no backend became ready"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("(No such file or directory)"), std::string::npos) << up.output;
  auto st = f.cli({"status", "--state-dir", f.dir});
  EXPECT_EQ(st.exit_code, 1);
  EXPECT_EQ(st.output.find("did not stop cleanly"), std::string::npos) << st.output;
  EXPECT_FALSE(fs::exists(f.dir + "/farm.json"));
}

TEST(farm_up, malformed_farm_file_names_file_line_column_and_key) {
  farm_fixture f("farm-malformed");
  auto file = f.write("bad.yaml", "models:\n  tiny: tiny.gguf\nroles:\n  fast: {model: tiny, ctx: lots}\n");
  auto up = f.up(file);
  EXPECT_EQ(up.exit_code, 2) << up.output;
  EXPECT_NE(up.output.find(file + ":4:"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("roles.fast.ctx"), std::string::npos) << up.output;
  EXPECT_FALSE(fs::exists(f.dir + "/farm.json"));
  auto typo = f.write("typo.yaml", "models:\n  tiny: tiny.gguf\nrols:\n  fast: {model: tiny}\n");
  auto up2 = f.up(typo);
  EXPECT_EQ(up2.exit_code, 2);
  EXPECT_NE(up2.output.find(typo + ":3:1"), std::string::npos) << up2.output;
  EXPECT_NE(up2.output.find("rols"), std::string::npos) << up2.output;
}

TEST(farm_up, foreground_sigterm_stops_everything_and_a_crashed_farm_is_cleaned_up) {
  farm_fixture f("farm-fg");
  auto file = f.write("farm.yaml", two_replica_farm());
  std::vector<int> pids;
  {
    test::child fg(f.up_argv(file), f.dir + "/fg1.out");
    ASSERT_TRUE(test::wait_until(
        [&] {
          auto s = f.status();
          return s && str(*s, "phase") == "running";
        },
        120s, 200ms))
        << fg.log();
    for (auto& [n, b] : f.backends()) pids.push_back(num(b, "pid"));
    ASSERT_EQ(pids.size(), 2u);
    ASSERT_EQ(f.chat("fast").status, 200);
    ::kill(fg.pid(), SIGTERM);
    auto code = fg.wait_exit(60s);
    ASSERT_TRUE(code) << "foreground up did not exit on SIGTERM";
    EXPECT_EQ(*code, 0) << fg.log();
    for (int pid : pids) EXPECT_FALSE(alive(pid)) << "backend " << pid << " outlived the farm";
    EXPECT_FALSE(fs::exists(f.dir + "/farm.json"));
  }
  // kill -9 of the farm itself: backends die with it (PR_SET_PDEATHSIG); the next up cleans up.
  pids.clear();
  {
    test::child fg(f.up_argv(file), f.dir + "/fg2.out");
    ASSERT_TRUE(test::wait_until(
        [&] {
          auto s = f.status();
          return s && str(*s, "phase") == "running";
        },
        120s, 200ms))
        << fg.log();
    for (auto& [n, b] : f.backends()) pids.push_back(num(b, "pid"));
    ::kill(fg.pid(), SIGKILL);
    ASSERT_TRUE(fg.wait_exit(10s));
    for (int pid : pids)
      EXPECT_TRUE(test::wait_until([&] { return !alive(pid); }, 15s)) << "backend " << pid << " orphaned";
    EXPECT_TRUE(fs::exists(f.dir + "/farm.json")) << "the crashed farm's state should still be there";
  }
  auto st = f.cli({"status", "--state-dir", f.dir});
  EXPECT_EQ(st.exit_code, 1);
  EXPECT_NE(st.output.find("did not stop cleanly"), std::string::npos) << st.output;
  auto up = f.up(file);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("did not stop cleanly"), std::string::npos) << up.output;
  EXPECT_EQ(f.chat("code").status, 200);
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
}

TEST(farm_up, a_frozen_backend_is_found_by_health_checks_and_restarted) {
  farm_fixture f("farm-frozen");
  auto file = f.write("farm.yaml", two_replica_farm("supervisor: {health_interval_s: 0.5, stop_timeout_s: 1, "
                                                    "backoff_initial_s: 0.5}\n"));
  ASSERT_EQ(f.up(file).exit_code, 0);
  int frozen = num(f.backends()["tiny-r1"], "pid");
  ASSERT_GT(frozen, 0);
  ASSERT_EQ(::kill(frozen, SIGSTOP), 0);  // alive, but answers nothing
  int reborn = 0;
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto b = f.backends()["tiny-r1"];
        reborn = num(b, "pid");
        return str(b, "state") == "ready" && reborn != frozen && reborn > 0;
      },
      90s, 250ms))
      << "the frozen backend was not replaced";
  EXPECT_FALSE(alive(frozen));
  auto b = f.backends()["tiny-r1"];
  EXPECT_EQ(num(b, "restarts"), 1);
  EXPECT_EQ(f.chat("fast").status, 200);
  auto logs = f.cli({"logs", "agifarm", "--state-dir", f.dir, "-n", "200"});
  EXPECT_NE(logs.output.find("health check failed"), std::string::npos) << logs.output;
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
}

TEST(farm_up, farm_file_without_strategy_is_planned_by_the_planner) {
  farm_fixture f("farm-planned");
  auto file = f.write("farm.yaml", "models:\n  tiny: " + test::tiny_model() +
                                       "\nroles:\n  fast: {model: tiny, ctx: 1024, agents: 2}\n");
  auto up = f.up(file);
  if (up.output.find("planner library is not built") != std::string::npos)
    GTEST_SKIP() << "no planner in this build";
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("agifarm: planning"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("tok/s per stream"), std::string::npos)
      << "the plan's predictions are not shown: " << up.output;
  auto bs = f.backends();
  ASSERT_FALSE(bs.empty());
  for (auto& [name, b] : bs) {
    EXPECT_EQ(str(b, "state"), "ready") << name;
    EXPECT_GT(num(b, "predicted_bytes"), 0) << name;
  }
  EXPECT_EQ(f.chat("fast").status, 200);
  // The plan document is kept for the dashboard's strategy table.
  auto s = f.status();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->at("plan").is_object()) << json::serialize(*s);
  EXPECT_FALSE(s->at("plan").at("candidates").as_array().empty());
  EXPECT_EQ(s->at("plan").at("file").as_string(), f.dir + "/farm-plan.json");

  // Measured memory: in the gateway's /metrics (promtool accepts it) and kept in measured-memory.json.
  const std::string tiny_r0 = bs.begin()->first;
  std::string metrics;
  EXPECT_TRUE(test::wait_until(
      [&] {
        metrics = test::http_request(f.port, "GET", "/metrics", "", {}, 5s).body;
        return metrics.find("agifarm_backend_memory_diff_bytes{backend=\"" + tiny_r0 + "\"") !=
               std::string::npos;
      },
      20s))
      << metrics;
  EXPECT_NE(metrics.find("agifarm_backend_memory_measured_bytes{backend=\"" + tiny_r0 +
                         "\",model=\"tiny\",node=\"local\","
                         "device=\"host\",buffer=\"model\"}"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("agifarm_backend_memory_predicted_bytes{backend=\"" + tiny_r0 + "\""),
            std::string::npos)
      << metrics;
  auto mfile = f.write("metrics.txt", metrics);
  auto prom = test::run({"/bin/sh", "-c", "promtool check metrics < " + mfile}, 30s);
  EXPECT_EQ(prom.exit_code, 0) << prom.output << "\n" << metrics;
  const std::string memory_json = f.dir + "/measured-memory.json";
  EXPECT_TRUE(test::wait_until([&] { return fs::exists(memory_json); }, 20s));
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
  EXPECT_FALSE(fs::exists(f.dir + "/farm-plan.json"))
      << "a stopped farm leaves no plan document for the next";

  // The next plan on this farm uses it, and says so: `agifarm plan` and `up` of the same farm file.
  std::ifstream mj(memory_json);
  std::string stored((std::istreambuf_iterator<char>(mj)), std::istreambuf_iterator<char>());
  EXPECT_NE(stored.find("\"model\":\"tiny\""), std::string::npos) << stored;
  EXPECT_NE(stored.find("\"device_kind\":\"host\""), std::string::npos) << stored;
  auto plan = f.cli({"plan", "--model", "tiny=" + test::tiny_model(), "--role", "fast:tiny:ctx=1024:agents=2",
                     "--state-dir", f.dir, "--llama", "off"});
  EXPECT_NE(plan.output.find("used measured memory from " + memory_json + ": model tiny on host measured"),
            std::string::npos)
      << plan.output;
  EXPECT_NE(plan.output.find("host reserve"), std::string::npos) << plan.output;
  auto plain = f.cli({"plan", "--model", "tiny=" + test::tiny_model(), "--state-dir", f.dir, "--no-measured",
                      "--llama", "off"});
  EXPECT_EQ(plain.output.find("used measured memory"), std::string::npos) << plain.output;
  auto again = f.up(file);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("used measured memory from " + memory_json), std::string::npos) << again.output;
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);
}

TEST(farm_up, plan_file_is_run_with_its_exact_arguments_and_predictions_are_shown) {
  farm_fixture f("farm-plan");
  auto tiny = test::tiny_model();
  auto plan = f.write("plan.json",
                      R"({"version":1,"deployment":{"strategy":"replica","backends":[
    {"name":"chat-r0","kind":"llama-server","model":"chat","model_file":")" +
                          tiny + R"(",
     "args":["-m",")" + tiny +
                          R"(","-c","2048","-np","2","-t","1","--alias","from-the-plan"],"slots":2,"ctx":2048,
     "predicted":{"devices":[],"host":{"name":"host","model_bytes":50000000,"context_bytes":10000000,
                  "compute_bytes":5000000,"total_bytes":65000000},
                  "decode_tps":120.5,"prefill_tps":900,"aggregate_decode_tps":200}}],
    "pools":[{"name":"chat","aliases":["fast"],"backends":["chat-r0"]}]}})");
  auto up = f.cli({"up", "--detach", "--plan", plan, "--state-dir", f.dir, "--listen",
                   "127.0.0.1:" + std::to_string(f.port)});
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("predicted: 120 tok/s per stream, 200 tok/s"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("host 62.0 MiB"), std::string::npos) << up.output;
  auto b = f.backends()["chat-r0"];
  EXPECT_EQ(num(b, "predicted_bytes"), 65000000);
  // The process runs exactly the plan's arguments, plus -lv 4 (agifarm's one addition: llama-server then
  // prints the buffers `status` shows as measured memory) and --host/--port from backend_argv.
  std::ifstream cmd("/proc/" + std::to_string(num(b, "pid")) + "/cmdline");
  std::string argv((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  for (auto& c : argv)
    if (c == '\0') c = ' ';
  EXPECT_NE(argv.find("-c 2048 -np 2 -t 1 --alias from-the-plan -lv 4 --host 127.0.0.1 --port " +
                      std::to_string(num(b, "port"))),
            std::string::npos)
      << argv;
  EXPECT_EQ(f.chat("fast").status, 200);
  EXPECT_EQ(f.cli({"down", "--state-dir", f.dir}).exit_code, 0);

  auto broken = f.write("broken.json", R"({"deployment":{"backends":[{"name":"x","port":"eighty"}]}})");
  auto bad = f.cli({"up", "--plan", broken, "--state-dir", f.dir});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("deployment.backends[0].port"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace agifarm
