// Unit tests of the multi-node controller's logic (farm/nodes.hpp) with a fake remote shell and a fake
// wall clock: how a deployment is split across nodes, the pre-flight checks, start order and clean-up
// on failure, losing a node and getting it back, and what the gateway is told.
#include "farm/nodes.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <deque>
#include <map>
#include <mutex>

namespace agifarm::farm {
namespace {

namespace json = boost::json;

hw::inventory two_nodes() {
  hw::inventory inv;
  inv.source = "test.yaml";
  hw::node a;
  a.name = "ctl";
  a.address = "10.0.0.1";
  hw::node b;
  b.name = "n1";
  b.address = "10.0.0.2";
  b.ssh = "root@10.0.0.2";
  hw::node c;
  c.name = "n2";
  c.address = "10.0.0.3";
  c.ssh = "root@10.0.0.3:2222";
  c.agifarm_path = "/opt/agifarm/bin/agifarm";
  inv.nodes = {a, b, c};
  return inv;
}

plan::backend_spec server(const std::string& name, const std::string& node) {
  plan::backend_spec b;
  b.name = name;
  b.node = node;
  b.model = "m";
  b.args = {"-m", "/m.gguf"};
  return b;
}

plan::backend_spec rpc(const std::string& name, const std::string& node, const std::string& host, int port) {
  plan::backend_spec b;
  b.name = name;
  b.kind = plan::backend_kind::rpc_server;
  b.node = node;
  b.host = host;
  b.port = port;
  return b;
}

// n2 hosts an rpc server used by a shard on n1, and a replica; this machine runs one replica.
plan::deployment hybrid() {
  plan::deployment d;
  d.strategy = "hybrid";
  auto shard = server("shard", "n1");
  shard.args.insert(shard.args.end(), {"--rpc", "10.0.0.3:50052"});
  shard.depends_on = {"rpc-n2"};
  d.backends = {server("r-local", "ctl"), shard, rpc("rpc-n2", "n2", "10.0.0.3", 50052),
                server("r-n2", "n2")};
  d.pools = {{"m", {"fast"}, {"r-local", "r-n2"}}, {"big", {"think"}, {"shard"}}};
  return d;
}

TEST(split_farm,
     remote_backends_bind_their_node_address_and_require_the_key_the_nodes_start_in_dependency_order) {
  auto s = split_farm(hybrid(), two_nodes(), "k3y-k3y-k3y");
  ASSERT_TRUE(s) << s.err().message;
  ASSERT_EQ(s->nodes.size(), 2u);
  EXPECT_EQ(s->nodes[0].name, "n2");  // its rpc server is needed by n1's shard
  EXPECT_EQ(s->nodes[1].name, "n1");
  EXPECT_EQ(s->nodes[0].target.port, 2222);
  EXPECT_EQ(s->nodes[0].agifarm, "/opt/agifarm/bin/agifarm");
  EXPECT_EQ(s->nodes[1].agifarm, "agifarm");
  ASSERT_EQ(s->local.backends.size(), 1u);
  EXPECT_EQ(s->local.backends[0].name, "r-local");
  EXPECT_EQ(s->local.backends[0].host, "127.0.0.1");
  EXPECT_FALSE(s->local.backends[0].env.count("LLAMA_API_KEY"));
  const auto& n1 = s->per_node.at("n1");
  ASSERT_EQ(n1.backends.size(), 1u);
  EXPECT_EQ(n1.backends[0].host, "10.0.0.2");
  EXPECT_EQ(n1.backends[0].node, "local");
  EXPECT_TRUE(n1.backends[0].depends_on.empty());  // the controller orders the nodes instead
  EXPECT_EQ(n1.backends[0].env.at("LLAMA_API_KEY"), "k3y-k3y-k3y");
  // The key is in the environment, never in the arguments.
  for (const auto& a : n1.backends[0].args) EXPECT_EQ(a.find("k3y"), std::string::npos);
  const auto& n2 = s->per_node.at("n2");
  ASSERT_EQ(n2.backends.size(), 2u);
  EXPECT_EQ(n2.backends[0].host, "10.0.0.3");
  EXPECT_FALSE(n2.backends[0].env.count("LLAMA_API_KEY"));  // rpc servers take no key
  // The whole deployment keeps the cross-node dependency (the gateway view needs it).
  auto shard =
      std::find_if(s->all.backends.begin(), s->all.backends.end(), [](auto& b) { return b.name == "shard"; });
  EXPECT_EQ(shard->depends_on, std::vector<std::string>{"rpc-n2"});
}

TEST(split_farm, refuses_what_it_cannot_reach_or_must_not_expose) {
  auto d = hybrid();
  d.backends[3].node = "n9";
  auto s = split_farm(d, two_nodes(), "k");
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().message.find("'n9'"), std::string::npos) << s.err().message;
  EXPECT_NE(s.err().message.find("test.yaml"), std::string::npos) << s.err().message;

  auto inv = two_nodes();
  inv.nodes[2].ssh = "";
  s = split_farm(hybrid(), inv, "k");
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().message.find("ctl, n2"), std::string::npos) << s.err().message;

  d = hybrid();
  d.backends[3].host = "0.0.0.0";
  s = split_farm(d, two_nodes(), "k");
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().message.find("allow_public_bind"), std::string::npos) << s.err().message;
  EXPECT_TRUE(split_farm(d, two_nodes(), "k", true));

  d = hybrid();
  d.backends[2].host = "127.0.0.1";  // an rpc server another node uses must not hide on loopback
  s = split_farm(d, two_nodes(), "k");
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().message.find("rpc-n2"), std::string::npos) << s.err().message;
}

// A remote shell whose answers the test scripts per (host, verb); records every call.
class fake_shell final : public remote::remote_shell {
 public:
  struct call {
    std::string host, verb, input;
  };
  std::map<std::string, std::deque<result<remote::command_output>>> script;  // "host verb" -> answers
  std::map<std::string, result<remote::command_output>> fallback;            // when the script runs dry
  std::vector<call> calls;
  std::mutex mu;

  result<remote::command_output> run(const remote::ssh_target& t, const std::vector<std::string>& argv,
                                     std::string_view input, std::chrono::milliseconds) override {
    std::lock_guard lk(mu);
    std::string verb = argv.size() > 2 ? argv[2] : "";
    calls.push_back({t.host, verb, std::string(input)});
    auto key = t.host + " " + verb;
    auto& q = script[key];  // deque default-constructs: fine
    if (!q.empty()) {
      auto r = q.front();
      q.pop_front();
      return r;
    }
    if (auto f = fallback.find(key); f != fallback.end()) return f->second;
    return remote::command_output{0, "", ""};
  }
  std::vector<std::string> verbs(const std::string& host) {
    std::vector<std::string> v;
    for (const auto& c : calls)
      if (c.host == host) v.push_back(c.verb);
    return v;
  }
};

remote::command_output ok(std::string out) { return {0, std::move(out), ""}; }
std::string info(const std::string& version = k_agifarm_version, bool llama = true) {
  return json::serialize(json::object{{"agifarm_version", version},
                                      {"llama_bin", "/l"},
                                      {"llama_server", llama},
                                      {"rpc_server", llama},
                                      {"llama_version", "7000 (abc)"},
                                      {"hostname", "h"}});
}
std::string node_status_json(const std::vector<std::pair<std::string, std::string>>& backends,
                             int port = 8081) {
  json::array bs;
  for (const auto& [name, state] : backends)
    bs.push_back(json::object{{"name", name},
                              {"kind", "llama-server"},
                              {"model", "m"},
                              {"host", "10.0.0.2"},
                              {"port", port},
                              {"pid", 42},
                              {"state", state},
                              {"restarts", 0},
                              {"reason", ""},
                              {"last_exit", ""},
                              {"started_wall", 1},
                              {"log_path", "/l"},
                              {"program", "/p"},
                              {"slots", 1},
                              {"predicted_bytes", 0},
                              {"rss_bytes", 1000}});
  return json::serialize(json::object{{"running", true},
                                      {"supervisor_pid", 7},
                                      {"started_wall", 1},
                                      {"phase", "running"},
                                      {"endpoint", ""},
                                      {"strategy", "x"},
                                      {"source", "controller"},
                                      {"backends", bs},
                                      {"pools", json::array{}}});
}

struct fleet_fixture {
  fake_shell sh;
  std::int64_t now = 1000;
  farm_split split;
  std::unique_ptr<node_fleet> fleet;
  std::vector<std::string> said;
  fleet_fixture() {
    auto s = split_farm(hybrid(), two_nodes(), "key");
    split = std::move(*s);
    fleet_options o;
    o.restart_backoff_initial = std::chrono::seconds(2);
    fleet = std::make_unique<node_fleet>(split.nodes, split.per_node, sh, o, [this] { return now; });
  }
  node_fleet::say_fn say() {
    return [this](const std::string& l) { said.push_back(l); };
  }
  std::string all_said() const {
    std::string s;
    for (const auto& l : said) s += l + "\n";
    return s;
  }
};

TEST(node_fleet, check_names_each_node_that_cannot_run_its_part) {
  fleet_fixture f;
  f.sh.fallback.insert_or_assign("10.0.0.2 info", ok(info()));
  f.sh.fallback.insert_or_assign(
      "10.0.0.3 info", remote::command_output{127, "", "sh: 1: /opt/agifarm/bin/agifarm: not found"});
  auto st = f.fleet->check(f.say());
  ASSERT_FALSE(st);
  EXPECT_NE(f.all_said().find("node n2 (root@10.0.0.3:2222): agifarm is not installed there"),
            std::string::npos)
      << f.all_said();
  EXPECT_NE(f.all_said().find("node n1 (root@10.0.0.2): agifarm 0.1.0, llama.cpp 7000 (abc)"),
            std::string::npos)
      << f.all_said();

  fleet_fixture g;
  g.sh.fallback.insert_or_assign("10.0.0.2 info", ok(info("0.0.9")));
  g.sh.fallback.insert_or_assign("10.0.0.3 info",
                                 make_error("ssh root@10.0.0.3:2222: host key verification failed"));
  st = g.fleet->check(g.say());
  ASSERT_FALSE(st);
  EXPECT_NE(g.all_said().find("agifarm 0.0.9 there, 0.1.0 here"), std::string::npos) << g.all_said();
  EXPECT_NE(
      g.all_said().find("node n2 (root@10.0.0.3:2222): cannot reach it: ssh root@10.0.0.3:2222: host key"),
      std::string::npos)
      << g.all_said();

  fleet_fixture h;
  h.sh.fallback.insert_or_assign("10.0.0.2 info", ok(info()));
  h.sh.fallback.insert_or_assign("10.0.0.3 info", ok(info(k_agifarm_version, false)));
  st = h.fleet->check(h.say());
  ASSERT_FALSE(st);
  EXPECT_NE(h.all_said().find("node n2 (root@10.0.0.3:2222): llama.cpp is not there"), std::string::npos)
      << h.all_said();
  EXPECT_TRUE(h.sh.verbs("10.0.0.2") == std::vector<std::string>{"info"});  // nothing started anywhere
}

TEST(node_fleet, start_goes_in_order_and_a_failure_stops_what_had_started) {
  fleet_fixture f;
  ASSERT_TRUE(f.fleet->start(f.say()));
  ASSERT_EQ(f.sh.calls.size(), 2u);
  EXPECT_EQ(f.sh.calls[0].host, "10.0.0.3");
  EXPECT_EQ(f.sh.calls[1].host, "10.0.0.2");
  // Each node gets its own part, with the key for its llama-servers.
  auto part = json::parse(f.sh.calls[1].input).as_object();
  ASSERT_EQ(part.at("backends").as_array().size(), 1u);
  EXPECT_EQ(part.at("backends").as_array()[0].at("env").at("LLAMA_API_KEY").as_string(), "key");

  fleet_fixture g;
  g.sh.script["10.0.0.2 up"].push_back(remote::command_output{1, "agifarm: no backend became ready", ""});
  auto st = g.fleet->start(g.say());
  ASSERT_FALSE(st);
  EXPECT_NE(st.err().message.find("node n1"), std::string::npos) << st.err().message;
  EXPECT_NE(st.err().message.find("no backend became ready"), std::string::npos) << st.err().message;
  EXPECT_EQ(g.sh.verbs("10.0.0.3"), (std::vector<std::string>{"up", "down"}));
  EXPECT_EQ(g.sh.verbs("10.0.0.2"), (std::vector<std::string>{"up", "down"}));
}

TEST(node_fleet, poll_tracks_loss_return_and_restart) {
  fleet_fixture f;
  const std::size_t n1 = 1;
  auto up_json = ok(node_status_json({{"shard", "ready"}}));
  f.sh.fallback.insert_or_assign("10.0.0.2 status", up_json);
  EXPECT_TRUE(f.fleet->poll(n1));
  EXPECT_FALSE(f.fleet->poll(n1));  // the same answer again: no change

  f.sh.fallback.insert_or_assign(
      "10.0.0.2 status", make_error("ssh root@10.0.0.2: no answer within 4 s", remote::k_exit_timed_out));
  f.now = 1010;
  EXPECT_FALSE(f.fleet->poll(n1));  // one failed poll is not yet a lost node
  EXPECT_EQ(f.fleet->snapshot()[n1].state, "up");
  EXPECT_TRUE(f.fleet->poll(n1));
  auto s = f.fleet->snapshot()[n1];
  EXPECT_EQ(s.state, "unreachable");
  EXPECT_EQ(s.since_wall, 1010);
  EXPECT_NE(s.error.find("no answer"), std::string::npos);
  EXPECT_EQ(s.backends.size(), 1u);  // what it last ran is kept
  EXPECT_FALSE(f.fleet->poll(n1));

  f.sh.fallback.insert_or_assign("10.0.0.2 status", up_json);
  EXPECT_TRUE(f.fleet->poll(n1));
  EXPECT_EQ(f.fleet->snapshot()[n1].state, "up");

  // A failed connection (sshd itself did not answer its keep-alives) is a lost node at once.
  f.sh.fallback.insert_or_assign(
      "10.0.0.2 status",
      make_error("ssh root@10.0.0.2: Timeout, server not responding", remote::k_exit_connection_failed));
  EXPECT_TRUE(f.fleet->poll(n1));
  EXPECT_EQ(f.fleet->snapshot()[n1].state, "unreachable");
  f.sh.fallback.insert_or_assign("10.0.0.2 status", up_json);
  EXPECT_TRUE(f.fleet->poll(n1));
  EXPECT_EQ(f.fleet->snapshot()[n1].state, "up");

  // The node answers but its daemon is gone: started again at once, then with a growing backoff.
  f.sh.fallback.insert_or_assign("10.0.0.2 status", remote::command_output{1, R"({"running":false})", ""});
  f.sh.script["10.0.0.2 up"].push_back(remote::command_output{1, "", "boom"});
  f.now = 1100;
  EXPECT_TRUE(f.fleet->poll(n1));
  s = f.fleet->snapshot()[n1];
  EXPECT_EQ(s.state, "down");
  EXPECT_EQ(s.restarts, 1);
  f.now = 1101;  // within the 2 s backoff: no new start
  f.fleet->poll(n1);
  EXPECT_EQ(f.fleet->snapshot()[n1].restarts, 1);
  f.now = 1102;
  EXPECT_TRUE(f.fleet->poll(n1));
  s = f.fleet->snapshot()[n1];
  EXPECT_EQ(s.restarts, 2);
  EXPECT_EQ(s.state, "starting");
  auto ups = 0;
  for (const auto& c : f.sh.calls) ups += c.host == "10.0.0.2" && c.verb == "up";
  EXPECT_EQ(ups, 2);
}

TEST(replica_view, a_replica_is_ready_only_when_its_node_and_its_rpc_servers_are) {
  auto split = split_farm(hybrid(), two_nodes(), "key");
  ASSERT_TRUE(split);
  backend_record local;
  local.name = "r-local";
  local.host = "127.0.0.1";
  local.port = 9001;
  local.state = "ready";
  node_status n2;
  n2.name = "n2";
  n2.state = "up";
  backend_record rpc_rec, r_n2;
  rpc_rec.name = "rpc-n2";
  rpc_rec.state = "ready";
  r_n2.name = "r-n2";
  r_n2.host = "10.0.0.3";
  r_n2.port = 8085;
  r_n2.state = "ready";
  n2.backends = {rpc_rec, r_n2};
  node_status n1;
  n1.name = "n1";
  n1.state = "up";
  backend_record shard;
  shard.name = "shard";
  shard.host = "10.0.0.2";
  shard.port = 8081;
  shard.state = "ready";
  n1.backends = {shard};

  auto v = replica_view(split->all, {local}, {n2, n1});
  EXPECT_TRUE(v["r-local"].ready);
  EXPECT_EQ(v["r-local"].url, "http://127.0.0.1:9001");
  EXPECT_TRUE(v["r-n2"].ready);
  EXPECT_EQ(v["r-n2"].url, "http://10.0.0.3:8085");
  EXPECT_TRUE(v["shard"].ready);
  EXPECT_FALSE(v.count("rpc-n2"));  // not a replica

  n2.state = "unreachable";
  n2.error = "no answer";
  v = replica_view(split->all, {local}, {n2, n1});
  EXPECT_TRUE(v["r-local"].ready);
  EXPECT_FALSE(v["r-n2"].ready);
  EXPECT_NE(v["r-n2"].reason.find("node n2 is unreachable"), std::string::npos) << v["r-n2"].reason;
  EXPECT_FALSE(v["shard"].ready);
  EXPECT_NE(v["shard"].reason.find("rpc server rpc-n2 is down"), std::string::npos) << v["shard"].reason;
}

TEST(remote_target, parses_user_host_port_and_refuses_what_ssh_would_misread) {
  auto t = remote::parse_ssh_target("root@10.0.0.2:2222");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->user, "root");
  EXPECT_EQ(t->host, "10.0.0.2");
  EXPECT_EQ(t->port, 2222);
  EXPECT_EQ(t->text(), "root@10.0.0.2:2222");
  t = remote::parse_ssh_target("box");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->user, "");
  EXPECT_EQ(t->port, 0);
  t = remote::parse_ssh_target("me@[fd00::2]:22");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "fd00::2");
  for (const char* bad :
       {"", "root@", "@h", "root@-oProxyCommand=x", "h:0", "h:99999", "h:x", "a b@h", "h;rm"}) {
    auto r = remote::parse_ssh_target(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.err().message.find("ssh target"), std::string::npos);
    }
  }
  EXPECT_EQ(remote::shell_quote("plain-word_1.2/x"), "plain-word_1.2/x");
  EXPECT_EQ(remote::shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(remote::shell_quote("a b;c"), "'a b;c'");
  EXPECT_EQ(remote::shell_quote(""), "''");
  EXPECT_NE(remote::describe_ssh_failure("Host key verification failed.\r\n").find("host key"),
            std::string::npos);
  EXPECT_NE(remote::describe_ssh_failure("ssh: connect to host 10.0.0.9 port 22: No route to host")
                .find("no route"),
            std::string::npos);
}

}  // namespace
}  // namespace agifarm::farm
