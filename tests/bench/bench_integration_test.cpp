// Integration tests of `agifarm bench` against real farms: the demo farm (tiny model, real
// llama-server replicas, the gateway), counted against the gateway's own /metrics; the strategies mode
// on tiny models (each strategy started, measured and stopped, no process left); and bad input.
// One demo farm is shared by the tests of this suite. Every wait is on a condition with a deadline.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "support/support.hpp"

namespace agifarm {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

test::run_result cli(std::vector<std::string> args, std::chrono::seconds timeout = 180s) {
  std::vector<std::string> argv{test::agifarm_cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv, timeout);
}

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(f, s);
  auto rp = s.rfind(')');
  return rp == std::string::npos || rp + 2 >= s.size() || (s[rp + 2] != 'Z' && s[rp + 2] != 'X');
}

// Sum of a metric's samples whose labels contain pool="<pool>".
double metric_sum(const std::string& text, const std::string& name, const std::string& pool) {
  double sum = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "{", 0) != 0) continue;
    auto close = line.find('}');
    if (close == std::string::npos ||
        line.substr(0, close).find("pool=\"" + pool + "\"") == std::string::npos)
      continue;
    sum += std::stod(line.substr(close + 1));
  }
  return sum;
}

class bench_demo_farm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::temp_dir("bench-demo");
    port_ = test::free_port();
    auto up = cli({"up", "--detach", "--state-dir", dir_, "--listen", "127.0.0.1:" + std::to_string(port_)});
    up_ok_ = up.exit_code == 0;
    up_output_ = up.output;
  }
  static void TearDownTestSuite() { cli({"down", "--state-dir", dir_, "--timeout", "20"}, 60s); }
  void SetUp() override { ASSERT_TRUE(up_ok_) << up_output_; }
  static std::string url() { return "http://127.0.0.1:" + std::to_string(port_); }
  static std::string metrics() { return test::http_request(port_, "GET", "/metrics", "", {}, 5s).body; }

  static inline std::string dir_, up_output_;
  static inline int port_ = 0;
  static inline bool up_ok_ = false;
};

TEST_F(bench_demo_farm, mix_report_counts_match_the_gateway_metrics_and_the_html_is_one_file) {
  // The gateway's pools, as /v1/models lists them (the demo farm's roles may be pools of their own).
  auto models = json::parse(test::http_request(port_, "GET", "/v1/models", "", {}, 5s).body).as_object();
  std::set<std::string> farm_pools;
  for (auto& m : models.at("data").as_array()) farm_pools.insert(std::string(m.at("root").as_string()));
  ASSERT_FALSE(farm_pools.empty());
  struct counts {
    double requests = 0, prompt = 0, gen = 0;
  };
  auto read = [&](const std::string& m) {
    std::map<std::string, counts> c;
    for (const auto& p : farm_pools)
      c[p] = {metric_sum(m, "agifarm_gateway_requests_total", p),
              metric_sum(m, "agifarm_gateway_prompt_tokens_total", p),
              metric_sum(m, "agifarm_gateway_completion_tokens_total", p)};
    return c;
  };
  auto before = read(metrics());
  auto out = test::temp_dir("bench-demo-out");
  auto r = cli({"bench", "--url", url() + "/v1", "--workload", "mix", "--duration", "4", "--concurrency", "3",
                "--out", out, "--seed", "7"},
               120s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("TTFT ms p50/p95/p99"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("report.html"), std::string::npos) << r.output;

  auto doc = json::parse(read_file(out + "/bench.json")).as_object();
  EXPECT_EQ(doc.at("workload").as_string(), "mix");
  std::map<std::string, counts> reported;
  auto& pools = doc.at("pools").as_array();
  ASSERT_GE(pools.size(), 1u);
  for (auto& pv : pools) {
    auto& p = pv.as_object();
    std::string name(p.at("pool").as_string());
    EXPECT_TRUE(farm_pools.contains(name)) << name;
    auto requests = p.at("requests").to_number<std::uint64_t>();
    EXPECT_EQ(p.at("ok").to_number<std::uint64_t>(), requests)
        << name << ": " << json::serialize(p.at("errors"));
    reported[name] = {static_cast<double>(requests),
                      static_cast<double>(p.at("prompt_tokens").to_number<std::uint64_t>()),
                      static_cast<double>(p.at("completion_tokens").to_number<std::uint64_t>())};
  }
  auto& t = doc.at("total").as_object();
  EXPECT_GE(t.at("requests").to_number<std::uint64_t>(), 3u);
  EXPECT_GT(t.at("prompt_tokens").to_number<std::uint64_t>(),
            t.at("requests").to_number<std::uint64_t>() * 10);
  EXPECT_GT(t.at("completion_tokens").to_number<std::uint64_t>(), 0u);
  EXPECT_GT(t.at("ttft_s").as_object().at("p50").to_number<double>(), 0);
  EXPECT_GT(t.at("itl_s").as_object().at("count").to_number<std::uint64_t>(), 0u);
  EXPECT_GT(t.at("completion_tokens_per_s").to_number<double>(), 0);
  std::map<std::string, int> kinds;
  for (auto& q : doc.at("requests").as_array()) ++kinds[std::string(q.at("kind").as_string())];
  EXPECT_GT(kinds["chat"], 0);

  // The gateway's own counters moved by exactly what the bench reports, pool by pool (it records a
  // request just after its last byte: wait for it, with a deadline).
  std::map<std::string, counts> moved;
  auto same = [&] {
    auto after = read(metrics());
    moved.clear();
    for (const auto& p : farm_pools)
      moved[p] = {after[p].requests - before[p].requests, after[p].prompt - before[p].prompt,
                  after[p].gen - before[p].gen};
    for (const auto& p : farm_pools) {
      auto want = reported.count(p) ? reported[p] : counts{};
      if (moved[p].requests != want.requests || moved[p].prompt != want.prompt || moved[p].gen != want.gen)
        return false;
    }
    return true;
  };
  test::wait_until(same, 5s, 100ms);
  for (const auto& p : farm_pools) {
    auto want = reported.count(p) ? reported[p] : counts{};
    EXPECT_EQ(moved[p].requests, want.requests) << p;
    EXPECT_EQ(moved[p].prompt, want.prompt) << p;
    EXPECT_EQ(moved[p].gen, want.gen) << p;
  }

  auto html = read_file(out + "/report.html");
  EXPECT_NE(html.find("new uPlot("), std::string::npos);
  EXPECT_GT(html.size(), 40000u) << "uPlot inlined";
  EXPECT_EQ(std::regex_search(html, std::regex(R"(<script[^>]*\ssrc=)")), false)
      << "the report fetches nothing";
  EXPECT_NE(html.find(reported.begin()->first), std::string::npos);
}

TEST_F(bench_demo_farm, agents_json_output_on_stdout_and_unknown_model_is_refused) {
  auto out = test::temp_dir("bench-demo-agents");
  auto r = cli({"bench", "--url", url(), "--workload", "agents", "--duration", "2", "--concurrency", "2",
                "--out", out, "--json", "--model", "code"},
               60s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto v = json::parse(r.output.substr(r.output.find('{'))).as_object();
  EXPECT_EQ(v.at("workload").as_string(), "agents");
  EXPECT_GT(v.at("total").as_object().at("ok").to_number<std::uint64_t>(), 0u);
  for (auto& q : v.at("requests").as_array()) EXPECT_EQ(q.at("model").as_string(), "code");
  auto bad = cli({"bench", "--url", url(), "--duration", "1", "--out", out, "--model", "nope"}, 30s);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--model 'nope'"), std::string::npos) << bad.output;
}

TEST(bench_bad_input, unreachable_url_bad_workload_bad_plan_exit_non_zero_with_the_reason) {
  auto out = test::temp_dir("bench-bad");
  int port = test::free_port();
  auto t0 = std::chrono::steady_clock::now();
  auto r = cli(
      {"bench", "--url", "http://127.0.0.1:" + std::to_string(port), "--duration", "1", "--out", out}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("cannot reach http://127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);

  auto w = cli({"bench", "--url", "http://127.0.0.1:1", "--workload", "chatty"}, 30s);
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_NE(w.output.find("unknown workload 'chatty' (expected chat, agents, long or mix)"),
            std::string::npos)
      << w.output;

  auto u = cli({"bench", "--url", "https://127.0.0.1:1"}, 30s);
  EXPECT_EQ(u.exit_code, 2);
  EXPECT_NE(u.output.find("only http:// is supported"), std::string::npos) << u.output;

  std::string broken = out + "/broken.json";
  std::ofstream(broken) << "{\"version\": 1, \"candidates\": [";
  auto p = cli({"bench", "--plan", broken, "--strategies", "--out", out}, 30s);
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.output.find(broken), std::string::npos) << p.output;
  auto missing = cli({"bench", "--plan", out + "/none.json", "--strategies", "--out", out}, 30s);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("none.json"), std::string::npos) << missing.output;
  auto nostrat = cli({"bench", "--strategies", "--out", out}, 30s);
  EXPECT_EQ(nostrat.exit_code, 2);
  EXPECT_NE(nostrat.output.find("--strategies needs --plan"), std::string::npos) << nostrat.output;
}

TEST(bench_strategies, every_feasible_strategy_of_a_tiny_plan_is_measured_and_nothing_is_left_running) {
  auto out = test::temp_dir("bench-strategies");
  // Two tiny models, one role each: the planner's candidates are each model on the CPU and the hybrid
  // that runs both (this machine has no GPU).
  auto a = test::tiny_model();
  auto b = test::tiny_model(
      "qwen3", {"--n-embd", "256", "--n-layer", "4", "--n-ff", "768", "--n-head", "8", "--n-head-kv", "4"});
  std::string plan_path = out + "/plan.json";
  auto plan =
      test::run({"/bin/sh", "-c",
                 "\"$0\" plan --model tiny-a=\"$1\" --model tiny-b=\"$2\" --role "
                 "fast:tiny-a:ctx=2048:agents=2 --role think:tiny-b:ctx=2048:agents=1 --json > \"$3\"",
                 test::agifarm_cli(), a, b, plan_path},
                60s);
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  auto doc = json::parse(read_file(plan_path)).as_object();
  std::size_t feasible = 0;
  for (auto& c : doc.at("candidates").as_array()) feasible += c.at("feasible").as_bool();
  ASSERT_GE(feasible, 2u) << read_file(plan_path);

  auto r = cli({"bench", "--plan", plan_path, "--strategies", "--workload", "chat", "--duration", "2",
                "--out", out, "--json"},
               240s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto v = json::parse(r.output.substr(r.output.rfind("{\"strategies\""))).as_object();
  auto& ss = v.at("strategies").as_array();
  EXPECT_EQ(ss.size(), feasible);
  for (auto& s : ss) {
    auto& o = s.as_object();
    std::string what =
        std::string(o.at("model").as_string()) + " " + std::string(o.at("strategy").as_string());
    EXPECT_TRUE(o.at("ran").as_bool()) << what << ": " << json::serialize(o);
    EXPECT_FALSE(o.contains("error")) << what << ": " << json::serialize(o);
    EXPECT_GT(o.at("requests").to_number<std::uint64_t>(), 0u) << what;
    EXPECT_EQ(o.at("errors").to_number<std::uint64_t>(), 0u) << what;
    EXPECT_GT(o.at("completion_tokens").to_number<std::uint64_t>(), 0u) << what;
    EXPECT_GT(o.at("measured_generated_tps").to_number<double>(), 0) << what;
    EXPECT_GT(o.at("measured_stream_tps").to_number<double>(), 0) << what;
    EXPECT_GT(o.at("predicted_decode_tps").to_number<double>(), 0) << what;
    EXPECT_FALSE(o.at("processes_left").as_bool()) << what;
    ASSERT_GE(o.at("pids").as_array().size(), 2u) << what << ": supervisor and at least one backend";
    for (auto& pid : o.at("pids").as_array())
      EXPECT_FALSE(alive(static_cast<int>(pid.as_int64()))) << what << " pid " << pid;
  }
}

}  // namespace
}  // namespace agifarm
