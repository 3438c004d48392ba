// Integration tests of a farm across several machines: each "machine" a network namespace with its own
// address and its own sshd (support/netns_cluster.hpp); `agifarm up` on this machine drives every node
// over real OpenSSH; real llama-server and ggml-rpc-server processes on the tiny model; a cross-node RPC
// shard; the real gateway; the official OpenAI client. One cluster is shared by the tests of this file.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "support/netns_cluster.hpp"
#include "support/support.hpp"

namespace agifarm {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

test::netns_cluster* cluster = nullptr;

class multinode : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    static std::unique_ptr<test::netns_cluster> c = test::netns_cluster::create(2, why);
    cluster = c.get();
    if (!cluster) std::cerr << "netns cluster: " << why << '\n';
  }
  void SetUp() override {
    ASSERT_NE(cluster, nullptr) << "the test machines (network namespaces + sshd) could not be made";
  }
};

// A farm of two remote nodes: replicas chat-n0 / chat-n1 (pool "chat", role fast) and a shard whose
// llama-server runs on node 0 with its layers on node 1's ggml-rpc-server (pool "big", role think).
struct farm_dir {
  std::string dir;
  int port = 0;
  int rpc_port = 0;
  std::string ssh_config;
  std::string agifarm_on_node0;  // `agifarm:` of node 0 in the inventory
  farm_dir(const std::string& name, std::string agifarm0 = test::agifarm_cli(),
           std::string cfg = cluster->ssh_config())
      : dir(test::temp_dir(name)),
        port(test::free_port()),
        rpc_port(50100 + (::getpid() % 500)),
        ssh_config(std::move(cfg)),
        agifarm_on_node0(std::move(agifarm0)) {
    write_files();
  }
  ~farm_dir() {  // never leave a farm behind on any machine, even when a test fails
    test::run({test::agifarm_cli(), "down", "--state-dir", dir + "/ctl", "--timeout", "30"}, 120s);
    for (int i = 0; i < cluster->size(); ++i)
      test::run({test::agifarm_cli(), "down", "--state-dir", node_state(i), "--timeout", "20"}, 60s);
  }
  std::string node_state(int i) const { return dir + "/node" + std::to_string(i); }
  std::string farm_file() const { return dir + "/farm.yaml"; }
  std::string plan_file() const { return dir + "/plan.json"; }

  void write_files(const std::vector<std::string>& node_addresses = {}) const {
    std::string inv = "nodes:\n";
    for (int i = 0; i < cluster->size(); ++i) {
      std::string addr =
          i < static_cast<int>(node_addresses.size()) ? node_addresses[i] : cluster->address(i);
      inv += "  - name: n" + std::to_string(i) + "\n    ssh: root@" + addr + "\n    address: " + addr +
             "\n    agifarm: " + (i == 0 ? agifarm_on_node0 : test::agifarm_cli()) +
             "\n    llama_bin: " + test::llama_bin() + "\n    state_dir: " + node_state(i) +
             "\n    ram_gb: 8\n";
    }
    std::ofstream(dir + "/inventory.yaml") << inv;
    std::ofstream(farm_file())
        << "inventory: inventory.yaml\nstate_dir: " << dir << "/ctl\nllama_bin: " << test::llama_bin()
        << "\nssh_options: [\"-F\", \"" << ssh_config << "\"]\n"
        << "supervisor: {probe_interval_s: 0, backoff_initial_s: 0.5}\n"
        << "gateway: {first_byte_timeout_ms: 8000, connect_timeout_ms: 1000, retries: 3}\n";
    const std::string model = test::tiny_model();
    auto server = [&](const std::string& name, const std::string& node, std::vector<std::string> extra) {
      json::array args{"-m", model.c_str(), "-c", "1024", "-t", "1"};
      for (auto& e : extra) args.push_back(json::value(e));
      return json::object{
          {"name", name},          {"kind", "llama-server"},      {"node", node}, {"model", "tiny"},
          {"model_file", model},   {"host", "127.0.0.1"},         {"port", 0},    {"args", args},
          {"env", json::object{}}, {"depends_on", json::array{}}, {"slots", 2},   {"ctx", 1024}};
    };
    auto shard =
        server("big-shard", "n0",
               {"-np", "1", "-ngl", "99", "--rpc", cluster->address(1) + ":" + std::to_string(rpc_port)});
    shard["depends_on"] = json::array{"rpc-n1"};
    shard["slots"] = 1;
    json::object rpc{{"name", "rpc-n1"},
                     {"kind", "ggml-rpc-server"},
                     {"node", "n1"},
                     {"model", ""},
                     {"model_file", ""},
                     {"host", cluster->address(1)},
                     {"port", rpc_port},
                     {"args", json::array{"-t", "1"}},
                     {"env", json::object{}},
                     {"depends_on", json::array{}},
                     {"slots", 1},
                     {"ctx", 0}};
    json::object d{{"strategy", "hybrid"},
                   {"backends", json::array{server("chat-n0", "n0", {"-np", "2"}),
                                            server("chat-n1", "n1", {"-np", "2"}), rpc, shard}},
                   {"pools", json::array{json::object{{"name", "chat"},
                                                      {"aliases", json::array{"fast"}},
                                                      {"backends", json::array{"chat-n0", "chat-n1"}},
                                                      {"balance", "least_outstanding"},
                                                      {"priority", 2}},
                                         json::object{{"name", "big"},
                                                      {"aliases", json::array{"think"}},
                                                      {"backends", json::array{"big-shard"}},
                                                      {"balance", "least_outstanding"},
                                                      {"priority", 0}}}}};
    std::ofstream(plan_file()) << json::serialize(json::object{{"deployment", d}});
  }

  test::run_result cli(std::vector<std::string> args, std::chrono::seconds timeout = 300s) const {
    std::vector<std::string> argv{test::agifarm_cli()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run(argv, timeout);
  }
  test::run_result up() const {
    return cli({"up", farm_file(), "--plan", plan_file(), "--detach", "--listen",
                "127.0.0.1:" + std::to_string(port)});
  }
  std::optional<json::object> status() const {
    auto r = cli({"status", "--json", "--state-dir", dir + "/ctl"}, 30s);
    boost::system::error_code ec;
    auto v = json::parse(r.output, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return v.as_object();
  }
  std::map<std::string, json::object> by_name(const char* what) const {
    std::map<std::string, json::object> out;
    auto s = status();
    if (!s || !s->contains(what)) return out;
    for (auto& b : s->at(what).as_array()) out[std::string(b.at("name").as_string())] = b.as_object();
    return out;
  }
  test::http_response chat(const std::string& model, std::chrono::milliseconds timeout = 60s) const {
    return test::http_request(
        port, "POST", "/v1/chat/completions",
        R"({"model":")" + model + R"(","messages":[{"role":"user","content":"Hello"}],"max_tokens":8})",
        {{"Content-Type", "application/json"}}, timeout);
  }
};

std::string str(const json::object& o, const char* k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

bool no_farm_process_anywhere() {
  for (int i = 0; i < cluster->size(); ++i)
    if (!cluster->processes(i).empty()) return false;
  return true;
}

std::string processes_text() {
  std::string out;
  for (int i = 0; i < cluster->size(); ++i)
    for (pid_t p : cluster->processes(i)) {
      std::ifstream f("/proc/" + std::to_string(p) + "/cmdline");
      std::string c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      std::replace(c.begin(), c.end(), '\0', ' ');
      out += "node " + std::to_string(i) + ": " + std::to_string(p) + " " + c + "\n";
    }
  return out;
}

// Plain HTTP to an address inside the cluster (test::http_request speaks only to loopback).
int status_of(const std::string& host, int port, const std::string& auth) {
  auto r = test::run({"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10", "-H",
                      "Content-Type: application/json", "-H", "Authorization: Bearer " + auth, "-d",
                      R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":2})",
                      "http://" + host + ":" + std::to_string(port) + "/v1/chat/completions"},
                     30s);
  return std::atoi(r.output.c_str());
}

TEST_F(multinode, up_serves_every_pool_across_two_nodes_and_down_leaves_no_process_anywhere) {
  farm_dir f("mn-up");
  const auto t0 = std::chrono::steady_clock::now();
  auto up = f.up();
  ASSERT_EQ(up.exit_code, 0) << up.output;
  std::cout << "[measured] up of 2 nodes (4 backends, 1 cross-node shard): "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  EXPECT_NE(up.output.find("node n0 (root@" + cluster->address(0)), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("agifarm 0.1.0"), std::string::npos) << up.output;
  // The rpc server's node starts before the node whose llama-server uses it.
  auto n1_start = up.output.find("node n1: starting"), n0_start = up.output.find("node n0: starting");
  ASSERT_NE(n1_start, std::string::npos) << up.output;
  ASSERT_NE(n0_start, std::string::npos) << up.output;
  EXPECT_LT(n1_start, n0_start) << up.output;

  auto all_ready = [&] {
    auto b = f.by_name("backends");
    return b.size() == 4 &&
           std::all_of(b.begin(), b.end(), [](auto& kv) { return str(kv.second, "state") == "ready"; });
  };
  ASSERT_TRUE(test::wait_until(all_ready, 60s)) << f.cli({"status", "--state-dir", f.dir + "/ctl"}).output;
  // The official OpenAI client gets answers from every pool through the one gateway.
  std::string node_path = std::string(std::getenv("HOME")) + "/.cache/agifarm/node/node_modules";
  for (const char* model : {"fast", "think"}) {
    auto r = test::run({"/usr/bin/env", "NODE_PATH=" + node_path, "node",
                        std::string(AGIFARM_SOURCE_DIR) + "/tests/gateway/openai_client.cjs",
                        "http://127.0.0.1:" + std::to_string(f.port) + "/v1", model},
                       180s);
    ASSERT_EQ(r.exit_code, 0) << model << ": " << r.output;
    EXPECT_NE(r.output.find("\"chat\":{\"object\":\"chat.completion\""), std::string::npos) << r.output;
  }
  // Both replicas served (least outstanding spreads concurrent requests).
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) ts.emplace_back([&] { ok += f.chat("fast").status == 200; });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 8);

  auto nodes = f.by_name("nodes");
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(str(nodes["n0"], "state"), "up");
  EXPECT_EQ(str(nodes["n1"], "state"), "up");
  EXPECT_EQ(str(nodes["n1"], "address"), cluster->address(1));
  auto backends = f.by_name("backends");
  ASSERT_EQ(backends.size(), 4u);
  for (auto& [name, b] : backends) EXPECT_EQ(str(b, "state"), "ready") << name;
  EXPECT_EQ(str(backends["chat-n1"], "node"), "n1");
  EXPECT_EQ(str(backends["chat-n1"], "host"), cluster->address(1));
  // No secret in status: the backend key never appears.
  auto human = f.cli({"status", "--state-dir", f.dir + "/ctl"}, 30s);
  EXPECT_EQ(human.exit_code, 0) << human.output;
  EXPECT_NE(human.output.find("NODE"), std::string::npos) << human.output;
  EXPECT_NE(human.output.find("n1"), std::string::npos) << human.output;
  EXPECT_EQ(human.output.find("LLAMA_API_KEY"), std::string::npos);

  // A remote backend refuses a request without the farm's key: a neighbour on the LAN cannot use it.
  int chat_n1_port = static_cast<int>(backends["chat-n1"].at("port").as_int64());
  EXPECT_EQ(status_of(cluster->address(1), chat_n1_port, "not-the-key"), 401);
  EXPECT_EQ(status_of(cluster->address(1), chat_n1_port, ""), 401);

  // A remote backend's log, over ssh.
  auto logs = f.cli({"logs", "--state-dir", f.dir + "/ctl", "n1/chat-n1", "-n", "400"}, 60s);
  EXPECT_EQ(logs.exit_code, 0) << logs.output;
  EXPECT_NE(logs.output.find("llama"), std::string::npos) << logs.output;
  auto bad = f.cli({"logs", "--state-dir", f.dir + "/ctl", "n9/chat-n1"}, 30s);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("no node 'n9'"), std::string::npos) << bad.output;

  // A second `up` for the same farm finds it instead of starting a twin.
  auto twin = f.up();
  EXPECT_NE(twin.exit_code, 0);
  EXPECT_NE(twin.output.find("already running"), std::string::npos) << twin.output;

  // The controller crashes (SIGKILL: no clean-up of its own). The next `up` finds what the nodes still
  // run, stops it, and brings the farm up again, serving.
  auto st = f.status();
  ASSERT_TRUE(st && st->contains("supervisor_pid"));
  const pid_t controller = static_cast<pid_t>(st->at("supervisor_pid").as_int64());
  ASSERT_GT(controller, 0);
  ASSERT_EQ(::kill(controller, SIGKILL), 0);
  ASSERT_TRUE(test::wait_until([&] { return ::kill(controller, 0) != 0; }, 20s));
  auto again = f.up();
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("did not stop cleanly"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("node n1"), std::string::npos) << again.output;
  EXPECT_EQ(f.chat("fast").status, 200);
  EXPECT_EQ(f.chat("think").status, 200);

  auto down = f.cli({"down", "--state-dir", f.dir + "/ctl"}, 180s);
  EXPECT_EQ(down.exit_code, 0) << down.output;
  EXPECT_TRUE(test::wait_until(no_farm_process_anywhere, 20s)) << processes_text();
}

TEST_F(multinode, a_lost_node_leaves_its_pools_under_load_and_rejoins_when_it_comes_back) {
  farm_dir f("mn-loss");
  auto up = f.up();
  ASSERT_EQ(up.exit_code, 0) << up.output;
  auto backends_ready = [&] {
    auto b = f.by_name("backends");
    return b.size() == 4 &&
           std::all_of(b.begin(), b.end(), [](auto& kv) { return str(kv.second, "state") == "ready"; });
  };
  ASSERT_TRUE(test::wait_until(backends_ready, 60s));

  // Load on the pool with a replica on each node; node 1's link is cut in the middle of it.
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, ok{0};
  std::vector<std::thread> clients;
  struct joiner {  // a failed ASSERT returns early: the clients still stop and are joined
    std::atomic<bool>& stop;
    std::vector<std::thread>& ts;
    ~joiner() {
      stop = true;
      for (auto& t : ts)
        if (t.joinable()) t.join();
    }
  } join_clients{stop, clients};
  std::mutex mu;
  std::vector<std::string> failures;
  for (int c = 0; c < 3; ++c)
    clients.emplace_back([&] {
      while (!stop) {
        ++sent;
        auto r = f.chat("fast", 60s);
        if (r.status == 200) {
          ++ok;
        } else {
          std::lock_guard lk(mu);
          failures.push_back(std::to_string(r.status) + " " + r.body);
          std::this_thread::sleep_for(100ms);  // no busy loop on a failure
        }
      }
    });
  ASSERT_TRUE(test::wait_until([&] { return ok.load() >= 6; }, 60s));
  cluster->link(1, false);
  const auto cut_at = std::chrono::steady_clock::now();
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  // Within seconds the controller sees node 1 unreachable and takes chat-n1 out of its pool; the
  // shard whose rpc server is on node 1 is reported down with the reason.
  ASSERT_TRUE(test::wait_until([&] { return str(f.by_name("nodes")["n1"], "state") == "unreachable"; }, 30s));
  std::cout << "[measured] node seen unreachable " << since(cut_at) << " s after its link was cut\n";
  // Node 0 stays up: a busy machine is not a lost one.
  EXPECT_EQ(str(f.by_name("nodes")["n0"], "state"), "up");
  auto backends = f.by_name("backends");
  EXPECT_NE(str(backends["big-shard"], "reason").find("rpc-n1"), std::string::npos)
      << str(backends["big-shard"], "reason");
  int ok_at_loss = ok.load();
  ASSERT_TRUE(test::wait_until([&] { return ok.load() >= ok_at_loss + 6; }, 60s))
      << "requests stopped flowing";
  auto think = f.chat("think", 30s);
  EXPECT_EQ(think.status, 503) << think.body;  // no replica of the shard can serve without its rpc server

  // The link comes back: node 1 is reachable again and its replica rejoins the pool by itself.
  cluster->link(1, true);
  const auto back_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::wait_until([&] { return str(f.by_name("nodes")["n1"], "state") == "up"; }, 90s))
      << f.cli({"status", "--state-dir", f.dir + "/ctl"}).output;
  std::cout << "[measured] node up again " << since(back_at) << " s after its link came back\n";
  ASSERT_TRUE(test::wait_until(backends_ready, 120s));
  stop = true;
  for (auto& t : clients) t.join();
  // No request was lost: every one answered 200 (those in flight on the cut link were retried).
  std::cout << "[measured] " << ok.load() << " of " << sent.load()
            << " requests answered 200 across the loss\n";
  EXPECT_EQ(ok.load(), sent.load());
  EXPECT_TRUE(failures.empty()) << failures.size()
                                << " failed, first: " << (failures.empty() ? "" : failures[0]);
  // The shard's llama-server lost its rpc connection with the link: its node's supervisor restarts it
  // (a request may see it fail once, 502, before it does); it serves again without the user's help.
  EXPECT_TRUE(test::wait_until([&] { return f.chat("think", 60s).status == 200; }, 120s, 1s))
      << f.cli({"status", "--state-dir", f.dir + "/ctl"}).output;

  // The machine crashes (its daemon and backends killed) and comes back: the controller starts its
  // part again and its backends rejoin.
  cluster->kill_all(1);
  const auto crash_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto n = f.by_name("nodes")["n1"];
        return n.contains("restarts") && n.at("restarts").as_int64() >= 1;
      },
      60s));
  ASSERT_TRUE(test::wait_until(backends_ready, 120s))
      << f.cli({"status", "--state-dir", f.dir + "/ctl"}).output;
  std::cout << "[measured] crashed node serving again " << since(crash_at)
            << " s after its processes were killed\n";
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f.chat("fast").status, 200);

  auto down = f.cli({"down", "--state-dir", f.dir + "/ctl"}, 180s);
  EXPECT_EQ(down.exit_code, 0) << down.output;
  EXPECT_TRUE(test::wait_until(no_farm_process_anywhere, 20s)) << processes_text();
}

TEST_F(multinode, a_node_that_cannot_run_its_part_is_named_and_nothing_is_left_running) {
  {  // agifarm is not installed on node 0
    farm_dir f("mn-no-agifarm", "/opt/agifarm-missing/bin/agifarm");
    auto up = f.up();
    EXPECT_NE(up.exit_code, 0) << up.output;
    EXPECT_NE(up.output.find("node n0"), std::string::npos) << up.output;
    EXPECT_NE(up.output.find("agifarm is not installed there"), std::string::npos) << up.output;
    EXPECT_TRUE(no_farm_process_anywhere()) << processes_text();
  }
  {  // node 0's host key is not the one known_hosts has
    farm_dir f("mn-wrong-key", test::agifarm_cli(), cluster->ssh_config_with_wrong_key(0));
    auto up = f.up();
    EXPECT_NE(up.exit_code, 0) << up.output;
    EXPECT_NE(up.output.find("node n0"), std::string::npos) << up.output;
    EXPECT_NE(up.output.find("host key"), std::string::npos) << up.output;
    EXPECT_TRUE(no_farm_process_anywhere()) << processes_text();
  }
  {  // node 0 does not answer at all
    farm_dir f("mn-unreachable");
    f.write_files({cluster->unused_address(), cluster->address(1)});
    auto up = f.up();
    EXPECT_NE(up.exit_code, 0) << up.output;
    EXPECT_NE(up.output.find("node n0 (root@" + cluster->unused_address()), std::string::npos) << up.output;
    EXPECT_NE(up.output.find("cannot reach it"), std::string::npos) << up.output;
    EXPECT_TRUE(no_farm_process_anywhere()) << processes_text();
  }
}

TEST_F(multinode, hw_over_ssh_writes_an_inventory_of_the_machines_that_reads_back) {
  std::string dir = test::temp_dir("mn-hw");
  std::string out = dir + "/inventory.yaml";
  auto r = test::run({test::agifarm_cli(), "hw", "--ssh", cluster->ssh_target(0), "--ssh",
                      cluster->ssh_target(1), "--ssh-option", "-F", "--ssh-option", cluster->ssh_config(),
                      "--agifarm", test::agifarm_cli(), "--no-measure", "-o", out},
                     120s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("ssh: " + cluster->ssh_target(0)), std::string::npos) << text;
  EXPECT_NE(text.find("address: \"" + cluster->address(1) + "\""), std::string::npos) << text;
  auto back = test::run({test::agifarm_cli(), "hw", "--inventory", out, "--json"}, 60s);
  ASSERT_EQ(back.exit_code, 0) << back.output;
  EXPECT_NE(back.output.find(cluster->address(0)), std::string::npos) << back.output;
  // A machine that does not answer: named, and no file is written.
  std::string none = dir + "/none.yaml";
  auto bad = test::run(
      {test::agifarm_cli(), "hw", "--ssh", "root@" + cluster->unused_address(), "--ssh-option", "-F",
       "--ssh-option", cluster->ssh_config(), "--agifarm", test::agifarm_cli(), "--no-measure", "-o", none},
      120s);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find(cluster->unused_address()), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(none));
}

}  // namespace
}  // namespace agifarm
