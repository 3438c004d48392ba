// The `emit llama` script run for real: a plan for the tiny MoE model sharded over two loopback
// ggml-rpc-server processes (with per-layer expert -ot rules the script must merge), emitted by the
// agifarm CLI, started by the script, answering a completion, then stopped with no process left; and a
// llama-server that requires the farm's backend key (farm.env), reached through gateway.sh's gateway.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/support.hpp"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace agifarm::test;

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Alive and not a zombie.
bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z';
}

json::object rpc_backend(const std::string& name, int port) {
  return {{"name", name}, {"kind", "ggml-rpc-server"}, {"node", "local"},      {"host", "127.0.0.1"},
          {"port", port}, {"args", json::array{}},     {"gpus", json::array{}}};
}

std::string plan_json(const std::string& model, int rpc0, int rpc1, int port) {
  // -lv 4: llama.cpp logs each device's buffers, so the test can see the model really went to RPC0/RPC1.
  json::array args{
      "-m",  model, "-c",    "1024",
      "-np", "1",   "-ngl",  "99",
      "-lv", "4",   "--rpc", "127.0.0.1:" + std::to_string(rpc0) + ",127.0.0.1:" + std::to_string(rpc1)};
  // One rule per layer, as a planner might write them; the script must carry one merged rule.
  for (int layer : {0, 1}) {
    args.emplace_back("-ot");
    args.emplace_back("blk\\." + std::to_string(layer) + "\\.ffn_(up|down|gate)_exps=CPU");
  }
  json::object server{{"name", "tiny-shard"},
                      {"kind", "llama-server"},
                      {"node", "local"},
                      {"model", "tiny"},
                      {"model_file", model},
                      {"host", "127.0.0.1"},
                      {"port", port},
                      {"args", args},
                      {"depends_on", json::array{"rpc0", "rpc1"}},
                      {"slots", 1},
                      {"ctx", 1024}};
  json::object doc{
      {"version", 1},
      {"inventory",
       {{"nodes",
         json::array{json::object{
             {"name", "local"}, {"address", "127.0.0.1"}, {"cpu_cores", 2}, {"gpus", json::array{}}}}}}},
      {"models", json::array{json::object{{"name", "tiny"}, {"file", model}, {"architecture", "qwen3moe"}}}},
      {"deployment",
       {{"strategy", "shard_rpc"},
        {"backends", json::array{rpc_backend("rpc0", rpc0), rpc_backend("rpc1", rpc1), server}},
        {"pools", json::array{json::object{{"name", "tiny"},
                                           {"aliases", json::array{"fast"}},
                                           {"backends", json::array{"tiny-shard"}}}}}}}};
  return json::serialize(doc);
}

struct emitted {
  fs::path dir, state, script;
};

emitted emit_plan(const std::string& name, const std::string& plan) {
  emitted e;
  fs::path root = temp_dir(name);
  e.dir = root / "out";
  e.state = root / "state";
  std::ofstream(root / "plan.json") << plan;
  auto r = run({agifarm_cli(), "emit", "llama", "--plan", (root / "plan.json").string(), "-o", e.dir.string(),
                "--llama-bin-dir", llama_bin()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  e.script = e.dir / "local.sh";
  // A second emit into the same directory refuses to overwrite.
  auto again =
      run({agifarm_cli(), "emit", "llama", "--plan", (root / "plan.json").string(), "-o", e.dir.string()});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("already exists; use --force"), std::string::npos) << again.output;
  return e;
}

run_result script(const emitted& e, const std::string& verb) {
  return run({"/usr/bin/env", "AGIFARM_STATE_DIR=" + e.state.string(), "START_TIMEOUT=180", "STOP_TIMEOUT=20",
              "/bin/bash", e.script.string(), verb},
             std::chrono::seconds(400));
}

std::map<std::string, pid_t> pids(const emitted& e) {
  std::map<std::string, pid_t> m;
  for (const char* n : {"rpc0", "rpc1", "tiny-shard"}) {
    std::string s = slurp(e.state / (std::string(n) + ".pid"));
    if (!s.empty()) m[n] = static_cast<pid_t>(std::stol(s));
  }
  return m;
}

TEST(EmitLlamaIntegration, ScriptStartsRpcShardThatAnswersThenStopsEverything) {
  std::string model = tiny_model("qwen3moe");
  int rpc0 = free_port(), rpc1 = free_port(), port = free_port();
  ASSERT_NE(rpc0, rpc1);
  emitted e = emit_plan("emit-llama", plan_json(model, rpc0, rpc1, port));
  std::string text = slurp(e.script);
  EXPECT_NE(text.find("-ot 'blk\\.[01]\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU'"), std::string::npos)
      << text;

  auto start = script(e, "start");
  ASSERT_EQ(start.exit_code, 0) << start.output;
  EXPECT_NE(start.output.find("warning: ggml-rpc-server has no authentication"), std::string::npos);
  auto p = pids(e);
  ASSERT_EQ(p.size(), 3u);
  for (const auto& [name, pid] : p) EXPECT_TRUE(alive(pid)) << name;
  EXPECT_EQ(slurp("/proc/" + std::to_string(p["rpc0"]) + "/comm"), "ggml-rpc-server\n");
  EXPECT_EQ(slurp("/proc/" + std::to_string(p["tiny-shard"]) + "/comm"), "llama-server\n");

  auto status = script(e, "status");
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_EQ(std::count(status.output.begin(), status.output.end(), '\n'), 3) << status.output;
  EXPECT_EQ(status.output.find("stopped"), std::string::npos) << status.output;

  // The backend really answers, with its model on the two RPC devices.
  auto r = http_request(port, "POST", "/completion", R"({"prompt": "Hello", "n_predict": 8})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto body = json::parse(r.body).as_object();
  EXPECT_TRUE(body.at("content").is_string());
  EXPECT_GT(body.at("tokens_predicted").to_number<int>(), 0);
  auto chat = http_request(port, "POST", "/v1/chat/completions",
                           R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})");
  EXPECT_EQ(chat.status, 200) << chat.body;
  std::string log = slurp(e.state / "tiny-shard.log");
  // Each RPC endpoint holds part of the weights (llama.cpp names the devices RPCn[host:port]). The merged
  // -ot rule was accepted: llama-server exits at startup on a rule it cannot parse or an unknown buffer.
  EXPECT_NE(log.find("[127.0.0.1:" + std::to_string(rpc0) + "] model buffer size"), std::string::npos) << log;
  EXPECT_NE(log.find("[127.0.0.1:" + std::to_string(rpc1) + "] model buffer size"), std::string::npos) << log;
  EXPECT_NE(log.find("tensor overrides to CPU are used"), std::string::npos);

  // start again: everything is already running, nothing new is started.
  auto twice = script(e, "start");
  EXPECT_EQ(twice.exit_code, 0) << twice.output;
  EXPECT_EQ(pids(e), p);

  auto stop = script(e, "stop");
  ASSERT_EQ(stop.exit_code, 0) << stop.output;
  for (const auto& [name, pid] : p) EXPECT_FALSE(alive(pid)) << name << " pid " << pid << " left running";
  EXPECT_TRUE(pids(e).empty());
  EXPECT_EQ(http_request(port, "GET", "/health", {}, {}, std::chrono::seconds(2)).status, 0);
  auto stopped = script(e, "status");
  EXPECT_EQ(std::count(stopped.output.begin(), stopped.output.end(), '\n'), 3);
  EXPECT_NE(stopped.output.find("tiny-shard"), std::string::npos);
}

TEST(EmitLlamaIntegration, FailedStartShowsTheLogAndStopsWhatItStarted) {
  int rpc0 = free_port(), rpc1 = free_port(), port = free_port();
  emitted e = emit_plan("emit-llama-bad", plan_json("/nonexistent/model.gguf", rpc0, rpc1, port));
  auto start = script(e, "start");
  EXPECT_EQ(start.exit_code, 1) << start.output;
  EXPECT_NE(start.output.find("tiny-shard exited while starting"), std::string::npos) << start.output;
  EXPECT_NE(start.output.find("stopping what was started"), std::string::npos) << start.output;
  EXPECT_NE(start.output.find("rpc0: stopped"), std::string::npos) << start.output;
  for (const char* n : {"rpc0", "rpc1", "tiny-shard"})
    EXPECT_FALSE(fs::exists(e.state / (std::string(n) + ".pid"))) << n;
}

// A llama-server whose plan env names LLAMA_API_KEY requires the farm's key: the script gives it from
// farm.env through the environment (never argv), llama-server refuses requests without it, and the gateway
// that gateway.sh starts sends it (gateway.yaml: key_env: AGIFARM_BACKEND_KEY).
TEST(EmitLlamaIntegration, KeyedBackendAnswersOnlyWithTheKeyAndTheGatewaySendsIt) {
  std::string model = tiny_model("qwen3");
  int port = free_port(), gw_port = free_port();
  json::object server{{"name", "tiny-r0"},
                      {"kind", "llama-server"},
                      {"node", "local"},
                      {"model", "tiny"},
                      {"model_file", model},
                      {"host", "127.0.0.1"},
                      {"port", port},
                      {"args", json::array{"-m", model, "-c", "512", "-np", "1"}},
                      {"env", {{"LLAMA_API_KEY", ""}}},
                      {"slots", 1},
                      {"ctx", 512}};
  json::object doc{
      {"version", 1},
      {"inventory",
       {{"nodes",
         json::array{json::object{
             {"name", "local"}, {"address", "127.0.0.1"}, {"cpu_cores", 2}, {"gpus", json::array{}}}}}}},
      {"models", json::array{json::object{{"name", "tiny"}, {"file", model}, {"architecture", "qwen3"}}}},
      {"deployment",
       {{"strategy", "replica"},
        {"backends", json::array{server}},
        {"pools", json::array{json::object{{"name", "tiny"}, {"backends", json::array{"tiny-r0"}}}}}}}};
  fs::path root = temp_dir("emit-llama-key");
  emitted e{root / "out", root / "state", root / "out" / "local.sh"};
  std::ofstream(root / "plan.json") << json::serialize(doc);
  auto r = run({agifarm_cli(), "emit", "llama", "--plan", (root / "plan.json").string(), "-o", e.dir.string(),
                "--llama-bin-dir", llama_bin(), "--agifarm", agifarm_cli(), "--listen",
                "127.0.0.1:" + std::to_string(gw_port)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("farm.env holds the farm's backend key"), std::string::npos) << r.output;
  EXPECT_EQ(fs::status(e.dir / "farm.env").permissions() & fs::perms::mask,
            fs::perms::owner_read | fs::perms::owner_write);
  std::string env = slurp(e.dir / "farm.env");
  auto at = env.find("\nLLAMA_API_KEY=");
  ASSERT_NE(at, std::string::npos) << env;
  std::string key = env.substr(at + 15, env.find('\n', at + 1) - at - 15);
  ASSERT_EQ(key.size(), 64u);

  // Without farm.env the script refuses to start anything.
  fs::rename(e.dir / "farm.env", root / "farm.env.away");
  auto refused = script(e, "start");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("farm.env is missing or unreadable"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(e.state / "tiny-r0.pid"));
  fs::rename(root / "farm.env.away", e.dir / "farm.env");

  auto start = script(e, "start");
  ASSERT_EQ(start.exit_code, 0) << start.output;
  pid_t pid = static_cast<pid_t>(std::stol(slurp(e.state / "tiny-r0.pid")));
  std::string cmdline = slurp("/proc/" + std::to_string(pid) + "/cmdline");
  EXPECT_EQ(cmdline.find(key), std::string::npos) << "the key is in llama-server's argv";
  EXPECT_NE(slurp("/proc/" + std::to_string(pid) + "/environ").find("LLAMA_API_KEY=" + key),
            std::string::npos);
  const std::string body = R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})";
  EXPECT_EQ(http_request(port, "POST", "/v1/chat/completions", body).status, 401);
  EXPECT_EQ(
      http_request(port, "POST", "/v1/chat/completions", body, {{"Authorization", "Bearer " + key}}).status,
      200);

  // The gateway, started by gateway.sh with farm.env loaded, sends the key to the replica.
  emitted g{e.dir, root / "gw-state", e.dir / "gateway.sh"};
  auto gw = script(g, "start");
  ASSERT_EQ(gw.exit_code, 0) << gw.output;
  pid_t gw_pid = static_cast<pid_t>(std::stol(slurp(g.state / "agifarm-gateway.pid")));
  EXPECT_EQ(slurp("/proc/" + std::to_string(gw_pid) + "/cmdline").find(key), std::string::npos);
  http_response through;
  // Until the gateway's health probe has marked the replica up.
  wait_until(
      [&] {
        through = http_request(
            gw_port, "POST", "/v1/chat/completions",
            R"({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})");
        return through.status == 200;
      },
      std::chrono::seconds(30));
  EXPECT_EQ(through.status, 200) << through.body;

  EXPECT_EQ(script(g, "stop").exit_code, 0);
  EXPECT_EQ(script(e, "stop").exit_code, 0);
  EXPECT_FALSE(alive(gw_pid));
  EXPECT_FALSE(alive(pid));
}

}  // namespace

namespace {

TEST(EmitCli, BadInputExitsTwoAndAllWritesEveryTarget) {
  fs::path root = temp_dir("emit-cli");
  auto missing = run(
      {agifarm_cli(), "emit", "llama", "--plan", (root / "nope.json").string(), "-o", (root / "o").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("cannot read the plan"), std::string::npos) << missing.output;
  std::ofstream(root / "bad.json")
      << R"({"version": 1, "deployment": {"backends": [{"name": "x", "port": 70000}]}})";
  auto bad = run({agifarm_cli(), "emit", "compose", "--plan", (root / "bad.json").string(), "-o",
                  (root / "o").string()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("plan JSON at deployment.backends[0].port"), std::string::npos) << bad.output;
  auto target = run(
      {agifarm_cli(), "emit", "k8s", "--plan", (root / "bad.json").string(), "-o", (root / "o").string()});
  EXPECT_NE(target.exit_code, 0);
  EXPECT_FALSE(fs::exists(root / "o"));

  std::string plan = std::string(AGIFARM_SOURCE_DIR) + "/tests/emit/plans/three-nodes.json";
  auto all = run({agifarm_cli(), "emit", "all", "--plan", plan, "-o", (root / "all").string()});
  ASSERT_EQ(all.exit_code, 0) << all.output;
  for (const char* t : {"llama", "compose", "systemd", "vllm", "deepspeed"})
    EXPECT_TRUE(fs::exists(root / "all" / t / "README.md")) << t;
  EXPECT_TRUE(fs::exists(root / "all" / "llama" / "work.sh"));
  // One backend key per emitted farm: every target's farm.env holds the same one.
  std::string env = slurp(root / "all" / "llama" / "farm.env");
  EXPECT_NE(env.find("\nAGIFARM_BACKEND_KEY="), std::string::npos) << env;
  EXPECT_EQ(slurp(root / "all" / "compose" / "farm.env"), env);
  EXPECT_EQ(slurp(root / "all" / "systemd" / "farm.env"), env);
  // `all` again: refused as a whole, nothing rewritten; with --force it succeeds.
  fs::remove(root / "all" / "vllm" / "README.md");
  auto again = run({agifarm_cli(), "emit", "all", "--plan", plan, "-o", (root / "all").string()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_FALSE(fs::exists(root / "all" / "vllm" / "README.md"));
  auto forced = run({agifarm_cli(), "emit", "all", "--plan", plan, "-o", (root / "all").string(), "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_TRUE(fs::exists(root / "all" / "vllm" / "README.md"));
  // --plan - reads the plan from standard input (agifarm plan --json | agifarm emit ...).
  auto piped = run({"/bin/sh", "-c",
                    agifarm_cli() + " emit vllm --plan - -o " + (root / "piped").string() + " < " + plan});
  EXPECT_EQ(piped.exit_code, 0) << piped.output;
  EXPECT_TRUE(fs::exists(root / "piped" / "big.sh"));
}

TEST(EmitCli, FarmFileIsPlannedThenEmitted) {
  fs::path root = temp_dir("emit-farm");
  std::string model = tiny_model("qwen3moe");
  std::ofstream(root / "farm.yaml") << "models:\n  tiny: " << model
                                    << "\nroles:\n  fast: {model: tiny, ctx: 2048, agents: 2}\n";
  auto r = run({agifarm_cli(), "emit", "llama", "--farm", (root / "farm.yaml").string(), "-o",
                (root / "out").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream script(root / "out" / "local.sh");
  std::stringstream text;
  text << script.rdbuf();
  EXPECT_NE(text.str().find(model), std::string::npos)
      << "the planned llama-server must load the farm's model";
  EXPECT_TRUE(fs::exists(root / "out" / "README.md"));
  auto both = run({agifarm_cli(), "emit", "llama", "--farm", (root / "farm.yaml").string(), "--plan",
                   "x.json", "-o", (root / "o2").string()});
  EXPECT_NE(both.exit_code, 0);
  std::ofstream(root / "bad.yaml") << "models:\n  tiny: " << model << "\nroles:\n  - {name: fast}\n";
  auto bad = run(
      {agifarm_cli(), "emit", "llama", "--farm", (root / "bad.yaml").string(), "-o", (root / "o3").string()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("bad.yaml:4:"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(root / "o3"));
}

}  // namespace
