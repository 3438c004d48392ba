// Integration tests of models on demand (issue 12): `agifarm up` with real llama-server processes on
// the tiny model under a declared memory budget (a CPU-only inventory whose RAM holds two of the three
// models by the memory model's prediction), the real gateway and real HTTP clients. Every wait is on a
// condition with a deadline. One farm serves several cases in order (CI has 2 cores and a time budget).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <thread>

#include "plan/memory_model.hpp"
#include "plan/server_args.hpp"
#include "support/support.hpp"

namespace agifarm {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
constexpr double k_mib = 1024.0 * 1024.0;

// The host bytes the memory model predicts for the tiny model at this context (what `up` budgets).
std::uint64_t predicted_host(int ctx) {
  std::vector<std::string> args{"-m", test::tiny_model(), "-c", std::to_string(ctx), "-np", "1", "-t", "1"};
  auto a = plan::parse_server_args(args);
  auto shape = plan::load_model_shape(test::tiny_model());
  if (!a || !shape) return 0;
  auto est = plan::estimate_memory(*shape, *a, {});
  return est ? est->host.total_bytes : 0;
}

struct od_farm {
  std::string dir;
  int port = 0;
  explicit od_farm(const std::string& name) : dir(test::temp_dir(name)), port(test::free_port()) {}
  ~od_farm() { test::run({test::agifarm_cli(), "down", "--state-dir", dir, "--timeout", "20"}, 60s); }
  test::run_result cli(std::vector<std::string> args, std::chrono::seconds timeout = 180s) const {
    std::vector<std::string> argv{test::agifarm_cli()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run(argv, timeout);
  }
  test::run_result up(const std::string& farm_file) const {
    return cli(
        {"up", "--detach", "--state-dir", dir, "--listen", "127.0.0.1:" + std::to_string(port), farm_file});
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = dir + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  test::http_response chat(const std::string& model, int max_tokens = 4, bool long_one = false,
                           const std::string& content = "Hello") const {
    std::string body = R"({"model":")" + model + R"(","messages":[{"role":"user","content":")" + content +
                       R"("}],"max_tokens":)" + std::to_string(max_tokens) +
                       (long_one ? R"(,"ignore_eos":true})" : "}");
    return test::http_request(port, "POST", "/v1/chat/completions", body,
                              {{"Content-Type", "application/json"}}, 180s);
  }
  // status --json's models, by name.
  std::map<std::string, json::object> models() const {
    std::map<std::string, json::object> out;
    auto r = cli({"status", "--json", "--state-dir", dir}, 30s);
    boost::system::error_code ec;
    auto v = json::parse(r.output, ec);
    if (ec || !v.is_object() || !v.as_object().contains("models")) return out;
    for (auto& m : v.as_object().at("models").as_array())
      out[std::string(m.at("name").as_string())] = m.as_object();
    return out;
  }
  std::int64_t count(const std::string& model, const char* what) const {
    auto ms = models();
    auto it = ms.find(model);
    return it == ms.end() ? -1 : it->second.at(what).as_int64();
  }
  std::string state(const std::string& model) const {
    auto ms = models();
    auto it = ms.find(model);
    return it == ms.end() ? "?" : std::string(it->second.at("state").as_string());
  }
  int outstanding(const std::string& replica) const {
    auto m = test::http_request(port, "GET", "/metrics");
    std::string key = "agifarm_gateway_replica_outstanding{replica=\"" + replica + "\"} ";
    auto p = m.body.find(key);
    return p == std::string::npos ? -1 : std::atoi(m.body.c_str() + p + key.size());
  }
};

std::string inventory(double ram_bytes) {
  return "nodes:\n  - name: local\n    address: 127.0.0.1\n    cpu: {model: \"test\", cores: 2, threads: 2}\n"
         "    ram_gb: " +
         std::to_string(ram_bytes / (1024.0 * 1024.0 * 1024.0)) + "\n    ram_bandwidth_gbs: 10\n";
}

// Three models with room for two (b pinned), one that fits alone but never beside pinned b.
TEST(on_demand_up,
     loads_on_first_request_once_evicts_idle_lru_never_busy_or_pinned_and_refuses_with_the_reason) {
  const int ctx_small = 16384, ctx_big = 32768;
  const double small = static_cast<double>(predicted_host(ctx_small));
  const double big = static_cast<double>(predicted_host(ctx_big));
  ASSERT_GT(small, 0);
  const double budget = std::max(2 * small, big) + 2 * k_mib;
  ASSERT_GE(budget, 0.125 * 1024 * k_mib) << "the inventory's smallest RAM is 128 MiB: raise the contexts";
  ASSERT_GT(small + big, budget) << "big must not fit beside a small model";
  ASSERT_GT(3 * small, budget);
  od_farm f("on-demand-evict");
  const std::string model = test::tiny_model();
  auto inv = f.write("machines.yaml", inventory(budget));
  auto farm = f.write("farm.yaml",
                      "models:\n"
                      "  a: {file: " +
                          model +
                          ", on_demand: true, args: [\"-t\", \"1\"]}\n"
                          "  b: {file: " +
                          model +
                          ", on_demand: true, pin: true, args: [\"-t\", \"1\"]}\n"
                          "  c: {file: " +
                          model +
                          ", on_demand: true, args: [\"-t\", \"1\"]}\n"
                          "  big: {file: " +
                          model +
                          ", on_demand: true, args: [\"-t\", \"1\"]}\n"
                          "roles:\n"
                          "  ra: {model: a, ctx: " +
                          std::to_string(ctx_small) +
                          "}\n"
                          "  rb: {model: b, ctx: " +
                          std::to_string(ctx_small) +
                          "}\n"
                          "  rc: {model: c, ctx: " +
                          std::to_string(ctx_small) +
                          "}\n"
                          "  rbig: {model: big, ctx: " +
                          std::to_string(ctx_big) +
                          "}\n"
                          "strategy: replica\ninventory: " +
                          inv + "\non_demand: {batch_ms: 0}\n");
  auto up = f.up(farm);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("start on demand"), std::string::npos) << up.output;

  // /v1/models lists every model, loaded or not; nothing is loaded yet.
  auto models = test::http_request(f.port, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  for (const char* m : {"\"a\"", "\"b\"", "\"c\"", "\"big\"", "\"ra\""})
    EXPECT_NE(models.body.find(m), std::string::npos) << models.body;
  EXPECT_EQ(f.state("a"), "unloaded");

  // Concurrent requests for an unloaded model start it once; every one is answered.
  {
    std::vector<std::future<test::http_response>> rs;
    for (int i = 0; i < 4; ++i) rs.push_back(std::async(std::launch::async, [&] { return f.chat("ra"); }));
    for (auto& r : rs) {
      auto got = r.get();
      EXPECT_EQ(got.status, 200) << got.body;
    }
  }
  EXPECT_EQ(f.count("a", "loads"), 1);
  EXPECT_EQ(f.state("a"), "loaded");
  // A long prompt leaves a's slot holding a prompt cache worth saving when a is evicted.
  std::string long_prompt;
  for (int i = 0; i < 150; ++i) long_prompt += "tell me about farms number " + std::to_string(i) + ". ";
  ASSERT_EQ(f.chat("ra", 4, false, long_prompt).status, 200);
  // A stream for an unloaded model starts when it is ready.
  auto stream = test::http_request(
      f.port, "POST", "/v1/chat/completions",
      R"({"model":"b","stream":true,"messages":[{"role":"user","content":"Hi"}],"max_tokens":4})",
      {{"Content-Type", "application/json"}}, 180s);
  ASSERT_EQ(stream.status, 200) << stream.body;
  EXPECT_NE(stream.body.find("data: [DONE]"), std::string::npos) << stream.body;
  EXPECT_EQ(f.count("b", "loads"), 1);

  // c needs room: b is busy (a long request in flight), a is idle -> a is evicted, never b; b's
  // request finishes normally during the swap.
  auto busy = std::async(std::launch::async, [&] { return f.chat("b", 3000, true); });
  ASSERT_TRUE(test::wait_until([&] { return f.outstanding("b-r0") >= 1; }, 30s));
  auto rc = f.chat("c");
  EXPECT_EQ(rc.status, 200) << rc.body;
  const bool b_still_busy = f.outstanding("b-r0") >= 1;
  auto rb = busy.get();
  EXPECT_EQ(rb.status, 200) << rb.body;
  EXPECT_TRUE(b_still_busy)
      << "the long request on b ended before c loaded: the case did not test a busy model";
  EXPECT_EQ(f.count("a", "evictions"), 1);
  EXPECT_EQ(f.count("b", "evictions"), 0);
  EXPECT_EQ(f.state("a"), "evicted");
  EXPECT_GE(f.count("a", "saved_tokens"), 64) << "a's prompt cache was not saved at its eviction";

  // Pinned: b is now the least recently used, but pinned; a's request evicts c instead.
  EXPECT_EQ(f.chat("c").status, 200);
  auto ra = f.chat("a");
  EXPECT_EQ(ra.status, 200) << ra.body;
  EXPECT_EQ(f.count("c", "evictions"), 1);
  EXPECT_EQ(f.count("b", "evictions"), 0);
  EXPECT_EQ(f.count("a", "loads"), 2);
  EXPECT_GE(f.count("a", "restored_tokens"), 64) << "a's prompt cache was not restored when it came back";

  // big fits alone but never beside pinned b: 503 naming b, at once.
  auto rbig = f.chat("big");
  EXPECT_EQ(rbig.status, 503) << rbig.body;
  EXPECT_NE(rbig.body.find("pinned b"), std::string::npos) << rbig.body;
  EXPECT_NE(rbig.body.find("big"), std::string::npos) << rbig.body;
  EXPECT_EQ(f.count("b", "evictions"), 0);

  // status and /metrics show states, load counts and load times.
  auto human = f.cli({"status", "--state-dir", f.dir});
  EXPECT_NE(human.output.find("MODEL"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("pinned"), std::string::npos) << human.output;
  auto metrics = test::http_request(f.port, "GET", "/metrics");
  EXPECT_NE(metrics.body.find("agifarm_model_loads_total{model=\"a\"} 2"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("agifarm_model_state{model=\"b\",state=\"loaded\"} 1"), std::string::npos);
  EXPECT_NE(metrics.body.find("agifarm_model_evictions_total{model=\"c\"} 1"), std::string::npos);
  EXPECT_NE(metrics.body.find("agifarm_model_load_seconds_last{model=\"a\"}"), std::string::npos);
}

// `up` refuses a farm whose on-demand model can never fit beside the always-on ones, naming it.
TEST(on_demand_up, refuses_a_model_that_can_never_fit_beside_the_always_on_ones) {
  const double small = static_cast<double>(predicted_host(16384));
  ASSERT_GT(small, 0);
  od_farm f("on-demand-never");
  const std::string model = test::tiny_model();
  auto inv = f.write("machines.yaml", inventory(std::max(1.5 * small, 0.13 * 1024 * k_mib)));
  auto farm =
      f.write("farm.yaml", "models:\n  keep: {file: " + model +
                               ", args: [\"-t\", \"1\"]}\n"
                               "  od: {file: " +
                               model +
                               ", on_demand: true}\n"
                               "roles:\n  rk: {model: keep, ctx: 16384}\n  ro: {model: od, ctx: 65536}\n"
                               "strategy: replica\ninventory: " +
                               inv + "\n");
  auto up = f.up(farm);
  EXPECT_EQ(up.exit_code, 3) << up.output;
  EXPECT_NE(up.output.find("on-demand model 'od' needs"), std::string::npos) << up.output;
}

// Two agents keep x and y busy with short pauses (200 ms, well inside the 1.5 s batch window) while a
// third asks for z, with room for two. Without batching, z evicts whichever of x and y pauses first and
// that one's next request loads it again (and so on while the agents run); with batching, z waits until
// the agents are done and loads once. Then every model is unloaded after its ttl.
int swap_loads(const std::string& name, int batch_ms, double budget, bool check_ttl) {
  od_farm f(name);
  const std::string model = test::tiny_model();
  std::string farm = "models:\n";
  for (const char* m : {"x", "y", "z"})
    farm +=
        std::string("  ") + m + ": {file: " + model + ", on_demand: true, ttl: 4s, args: [\"-t\", \"1\"]}\n";
  farm +=
      "roles:\n  rx: {model: x, ctx: 16384}\n  ry: {model: y, ctx: 16384}\n  rz: {model: z, ctx: 16384}\n";
  farm += "strategy: replica\ninventory: " + f.write("machines.yaml", inventory(budget)) +
          "\non_demand: {batch_ms: " + std::to_string(batch_ms) + "}\n";
  auto up = f.up(f.write("farm.yaml", farm));
  EXPECT_EQ(up.exit_code, 0) << up.output;
  if (up.exit_code != 0) return -1;
  EXPECT_EQ(f.chat("x").status, 200);
  EXPECT_EQ(f.chat("y").status, 200);
  std::atomic<int> failures{0};
  std::vector<std::thread> agents;
  for (const char* m : {"x", "y"})
    agents.emplace_back([&, m] {
      for (int k = 0; k < 12; ++k) {
        if (f.chat(m).status != 200) failures++;
        std::this_thread::sleep_for(200ms);  // the agent thinks (workload shape, not a wait for a condition)
      }
    });
  std::this_thread::sleep_for(500ms);
  if (f.chat("z").status != 200) failures++;
  for (auto& t : agents) t.join();
  EXPECT_EQ(failures.load(), 0);
  int loads = 0;
  for (const char* m : {"x", "y", "z"}) loads += static_cast<int>(f.count(m, "loads"));
  if (check_ttl) {
    EXPECT_TRUE(test::wait_until(
        [&] {
          auto ms = f.models();
          for (auto& [n, m] : ms)
            if (m.at("state").as_string() == "loaded" || m.at("state").as_string() == "loading") return false;
          return ms.size() == 3;
        },
        30s))
        << "models still loaded after their ttl";
    std::int64_t unloads = 0;
    for (const char* m : {"x", "y", "z"}) unloads += f.count(m, "unloads");
    EXPECT_GE(unloads, 2);
  }
  return loads;
}

TEST(on_demand_up, batching_loads_fewer_times_than_no_batching_and_ttl_unloads) {
  const double small = static_cast<double>(predicted_host(16384));
  ASSERT_GT(small, 0);
  const double budget = 2.5 * small;
  ASSERT_GE(budget, 0.125 * 1024 * k_mib);
  int off = swap_loads("on-demand-batch-off", 0, budget, false);
  int on = swap_loads("on-demand-batch-on", 1500, budget, true);
  std::printf("loads with two busy agents and one request for a third model: batching off %d, on %d\n", off,
              on);
  EXPECT_EQ(on, 3) << "with batching, z loads once and x, y stay";
  EXPECT_GE(off, 4) << "without batching, z evicts a busy agent's model, which loads again";
}

}  // namespace
}  // namespace agifarm
