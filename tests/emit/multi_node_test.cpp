// One farm across several machines (tests/emit/plans/three-nodes.json: RPC servers on work and old, the
// shard on big, a CPU replica on old): every backend off the gateway's node binds its node's address,
// the gateway config reaches the remote replicas with the backend key (key_env), farm.env holds the key
// with mode 0600 and no other file holds it, and the README says which node starts what, in order.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <regex>

#include "emit_test_util.hpp"
#include "gateway/config.hpp"

namespace agifarm::emit::test {
namespace {
namespace fs = std::filesystem;

const std::vector<std::string> k_farm_targets{"llama", "compose", "systemd"};
const std::map<std::string, std::string> k_address{
    {"big", "192.168.1.10"}, {"work", "192.168.1.11"}, {"old", "192.168.1.12"}};

files emit_ok(const std::string& target, const emit_input& in, const emit_options& opt = {}) {
  auto out = emit_target(target, in, opt);
  EXPECT_TRUE(out.ok()) << target << ": " << (out.ok() ? "" : out.err().message);
  return out.ok() ? *out : files{};
}

const emitted_file* find(const files& out, const std::string& path) {
  for (const auto& f : out)
    if (f.path == path) return &f;
  return nullptr;
}

// The key farm.env gives the gateway (AGIFARM_BACKEND_KEY=...); "" when absent.
std::string key_in(const files& out) {
  const emitted_file* f = find(out, k_farm_env_file);
  if (!f) return {};
  std::smatch m;
  if (!std::regex_search(f->content, m, std::regex("(^|\n)AGIFARM_BACKEND_KEY=([^\n]*)\n"))) return {};
  return m[2];
}

// The files of a node: the llama target's NODE.sh, compose's and systemd's NODE/ directory.
std::vector<const emitted_file*> node_files(const files& out, const std::string& target,
                                            const std::string& node) {
  std::vector<const emitted_file*> v;
  for (const auto& f : out)
    if (target == "llama" ? f.path == node + ".sh" : f.path.rfind(node + "/", 0) == 0) v.push_back(&f);
  return v;
}

TEST(EmitMultiNode, RemoteBackendsBindTheirNodesAddressNeverLoopbackOrAllInterfaces) {
  emit_input in = load_plan("three-nodes");
  for (const auto& t : k_farm_targets) {
    files out = emit_ok(t, in);
    for (const char* node : {"work", "old"}) {
      auto nf = node_files(out, t, node);
      ASSERT_FALSE(nf.empty()) << t << " " << node;
      std::string all;
      for (const auto* f : nf) {
        all += f->content;
        EXPECT_EQ(f->content.find("127.0.0.1"), std::string::npos) << t << ": " << f->path << "\n"
                                                                   << f->content;
        EXPECT_EQ(f->content.find("0.0.0.0"), std::string::npos) << t << ": " << f->path;
      }
      // Each backend of the node names the node's address as its bind address.
      const std::string& a = k_address.at(node);
      std::string rpc_bind = t == "compose" ? "\"-H\", \"" + a + "\""
                             : t == "llama" ? "\n    -H " + a
                                            : " -H " + a;
      EXPECT_NE(all.find(rpc_bind), std::string::npos) << t << " " << node << "\n" << all;
      if (std::string(node) == "old") {
        std::string server_bind = t == "compose" ? "\"--host\", \"" + a + "\""
                                  : t == "llama" ? "\n    --host " + a
                                                 : " --host " + a;
        EXPECT_NE(all.find(server_bind), std::string::npos) << t << "\n" << all;
      }
    }
    // The gateway's own node keeps its llama-server on loopback, as planned.
    std::string big;
    for (const auto* f : node_files(out, t, "big")) big += f->content;
    EXPECT_NE(big.find("127.0.0.1"), std::string::npos) << t;
  }
}

TEST(EmitMultiNode, GatewayConfigReachesRemoteReplicasWithTheKey) {
  emit_input in = load_plan("three-nodes");
  for (const auto& t : k_farm_targets) {
    files out = emit_ok(t, in);
    std::string key = key_in(out);
    ASSERT_FALSE(key.empty()) << t;
    const emitted_file* yaml = find(out, t == "llama" ? "gateway.yaml" : "big/gateway.yaml");
    ASSERT_NE(yaml, nullptr) << t;
    EXPECT_NE(yaml->content.find("url: \"http://192.168.1.12:8081\"\n        key_env: AGIFARM_BACKEND_KEY\n"),
              std::string::npos)
        << yaml->content;
    // Loaded by the gateway's own parser, with AGIFARM_BACKEND_KEY as farm.env sets it.
    std::string asked;
    auto cfg = gateway::config_from_yaml(
        yaml->content, "gateway.yaml", [&](const std::string& var) -> std::optional<std::string> {
          asked = var;
          return var == k_backend_key_var ? std::optional<std::string>(key) : std::nullopt;
        });
    ASSERT_TRUE(cfg.ok()) << cfg.err().message;
    EXPECT_EQ(asked, k_backend_key_var);
    int remote = 0;
    for (const auto& pool : cfg->pools)
      for (const auto& r : pool.replicas) {
        if (r.name == "qwen3-4b-old") {
          ++remote;
          EXPECT_EQ(r.url, "http://192.168.1.12:8081");
          EXPECT_EQ(r.api_key, key);
        } else {
          EXPECT_EQ(r.url, "http://127.0.0.1:8081");  // the shard, on the gateway's node
          EXPECT_EQ(r.api_key, "");
        }
      }
    EXPECT_EQ(remote, 1) << t;
  }
}

TEST(EmitMultiNode, FarmEnvHoldsAFreshKeyThatNoOtherFileHolds) {
  emit_input in = load_plan("three-nodes");
  std::set<std::string> keys;
  for (const auto& t : k_farm_targets) {
    files out = emit_ok(t, in);
    std::string key = key_in(out);
    EXPECT_TRUE(std::regex_match(key, std::regex("[0-9a-f]{64}"))) << key;
    keys.insert(key);
    const emitted_file* env = find(out, k_farm_env_file);
    ASSERT_NE(env, nullptr);
    EXPECT_TRUE(env->secret);
    EXPECT_FALSE(env->executable);
    EXPECT_NE(env->content.find("\nLLAMA_API_KEY=" + key + "\n"), std::string::npos) << env->content;
    for (const auto& f : out)
      if (&f != env) {
        EXPECT_EQ(f.content.find(key), std::string::npos) << t << ": the key is in " << f.path;
      }
  }
  EXPECT_EQ(keys.size(), k_farm_targets.size()) << "each call without backend_key draws a new key";
  // A key given in the options is used as is (the CLI draws one per invocation, so `emit all` shares it).
  emit_options opt;
  opt.backend_key = "a-given-key-for-this-farm-0123456789";
  for (const auto& t : k_farm_targets) EXPECT_EQ(key_in(emit_ok(t, in, opt)), opt.backend_key) << t;
}

TEST(EmitMultiNode, FarmEnvIsWrittenWithMode0600EvenOverAWiderFile) {
  fs::path d = fs::path(AGIFARM_BINARY_DIR) / "test-work" / "emit-multi-node" / "mode";
  fs::remove_all(d);
  files out = emit_ok("llama", load_plan("three-nodes"));
  ::umask(022);
  ASSERT_TRUE(write_files(d.string(), out, false).ok());
  auto mode = [&] { return fs::status(d / k_farm_env_file).permissions() & fs::perms::mask; };
  EXPECT_EQ(mode(), fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(read_text((d / k_farm_env_file).string()), find(out, k_farm_env_file)->content);
  EXPECT_GE(key_in(out).size(), 32u);
  fs::permissions(d / k_farm_env_file, fs::perms::all);
  ASSERT_TRUE(write_files(d.string(), out, true).ok());
  EXPECT_EQ(mode(), fs::perms::owner_read | fs::perms::owner_write);
  // Never written through a planted symlink.
  fs::remove(d / k_farm_env_file);
  fs::create_symlink(d / "elsewhere", d / k_farm_env_file);
  EXPECT_FALSE(write_files(d.string(), out, true).ok());
  EXPECT_FALSE(fs::exists(d / "elsewhere"));
}

TEST(EmitMultiNode, AKeyThePlanCarriesGoesToFarmEnvOnly) {
  emit_input in = load_plan("three-nodes");
  const std::string planned = "planned-key-0123456789abcdef0123456789";
  for (auto& b : in.deployment.backends)
    if (b.name == "qwen3-235b-a22b-shard" || b.name == "qwen3-4b-old")
      b.env[std::string(plan::k_api_key_env)] = planned;
  emit_options opt;
  opt.backend_key = "an-option-key-the-plan-overrides-0123456";
  for (const auto& t : k_farm_targets) {
    files out = emit_ok(t, in, opt);
    EXPECT_EQ(key_in(out), planned) << t;
    for (const auto& f : out)
      if (f.path != k_farm_env_file) {
        EXPECT_EQ(f.content.find(planned), std::string::npos) << t << ": the key is in " << f.path;
      }
    // The shard on the gateway's node now requires the key too.
    const emitted_file* yaml = find(out, t == "llama" ? "gateway.yaml" : "big/gateway.yaml");
    ASSERT_NE(yaml, nullptr);
    EXPECT_NE(yaml->content.find("url: \"http://127.0.0.1:8081\"\n        key_env: AGIFARM_BACKEND_KEY\n"),
              std::string::npos)
        << yaml->content;
  }
  // Every other target still never prints it.
  for (const auto& t : target_names()) {
    files out = emit_ok(t, in, opt);
    for (const auto& f : out)
      if (f.path != k_farm_env_file) {
        EXPECT_EQ(f.content.find(planned), std::string::npos) << t << ": the key is in " << f.path;
      }
  }
}

TEST(EmitMultiNode, KeysAndAddressesThatCannotWorkAreRefused) {
  emit_input base = load_plan("three-nodes");
  auto error_of = [](const emit_input& in, const std::string& target) {
    auto r = emit_target(target, in, emit_options{});
    EXPECT_FALSE(r.ok()) << target;
    return r.ok() ? std::string() : r.err().message;
  };
  {
    auto in = base;
    in.deployment.backends[3].env[std::string(plan::k_api_key_env)] = "first-key-0123456789";
    in.deployment.backends[4].env[std::string(plan::k_api_key_env)] = "second-key-0123456789";
    for (const auto& t : k_farm_targets) {
      std::string e = error_of(in, t);
      EXPECT_EQ(e,
                "plan: backends 'qwen3-235b-a22b-shard' and 'qwen3-4b-old' carry different LLAMA_API_KEY "
                "values; emit "
                "writes one backend key per farm (farm.env)");
      EXPECT_EQ(e.find("first-key"), std::string::npos);
    }
  }
  {
    auto in = base;
    in.deployment.backends[4].env[std::string(plan::k_api_key_env)] = "has a space";
    std::string e = error_of(in, "llama");
    EXPECT_NE(e.find("'qwen3-4b-old' carries a LLAMA_API_KEY with characters farm.env cannot hold"),
              std::string::npos)
        << e;
    EXPECT_EQ(e.find("space"), std::string::npos);
  }
  {
    auto in = base;
    for (auto& n : in.nodes)
      if (n.name == "old") n.address = "127.0.0.1";
    EXPECT_EQ(error_of(in, "systemd"),
              "plan: llama-server 'qwen3-4b-old' runs on node 'old', not on the gateway's node 'big', and "
              "the inventory gives node 'old' no private address to bind it to");
  }
  {
    // An address the plan chose for a remote llama-server is kept.
    auto in = base;
    in.deployment.backends[4].host = "10.0.0.12";
    files out = emit_ok("llama", in);
    EXPECT_NE(find(out, "old.sh")->content.find("--host 10.0.0.12"), std::string::npos);
    EXPECT_NE(find(out, "gateway.yaml")->content.find("http://10.0.0.12:8081"), std::string::npos);
  }
  {
    // ... and one on all interfaces is narrowed to the node's address.
    auto in = base;
    in.deployment.backends[4].host = "0.0.0.0";
    files out = emit_ok("compose", in);
    EXPECT_NE(find(out, "old/docker-compose.yml")->content.find("\"--host\", \"192.168.1.12\""),
              std::string::npos);
  }
}

TEST(EmitMultiNode, GatewayRunsOnLocalElseOnTheNodeWithMostServersInInventoryOrder) {
  emit_input in = load_plan("three-nodes");
  // As planned, old and big run one llama-server each: big comes first in the inventory (old first in start
  // order).
  EXPECT_NE(find(emit_ok("systemd", in), "big/agifarm-gateway.service"), nullptr);
  // A second replica on old: old wins.
  auto extra = in.deployment.backends[4];
  extra.name = "qwen3-4b-old-2";
  extra.port = 8082;
  in.deployment.backends.push_back(extra);
  files out = emit_ok("systemd", in);
  EXPECT_NE(find(out, "old/agifarm-gateway.service"), nullptr);
  // Now the shard on big is remote: bound to big's address, behind the key.
  EXPECT_NE(find(out, "big/agifarm-qwen3-235b-a22b-shard.service")->content.find("--host 192.168.1.10"),
            std::string::npos);
  // A node named "local" always runs it.
  for (auto& n : in.nodes)
    if (n.name == "work") n.name = "local";
  for (auto& b : in.deployment.backends)
    if (b.node == "work") b.node = "local";
  EXPECT_NE(find(emit_ok("systemd", in), "local/agifarm-gateway.service"), nullptr);
}

TEST(EmitMultiNode, ReadmeSaysWhichNodeStartsWhatInOrder) {
  emit_input in = load_plan("three-nodes");
  for (const auto& t : k_farm_targets) {
    files out = emit_ok(t, in);
    const std::string& r = find(out, "README.md")->content;
    auto rpc = r.find("1. node `work`");
    auto old = r.find("node `old`", rpc);
    auto shard = r.find("2. node `big`");
    auto gw = r.find("3. node `big`: the gateway");
    EXPECT_TRUE(rpc != std::string::npos && old != std::string::npos && shard != std::string::npos &&
                gw != std::string::npos && rpc < old && old < shard && shard < gw)
        << t << "\n"
        << r;
    EXPECT_NE(r.find("`rpc-work-gpu0`, `rpc-work-gpu1` (ggml-rpc-server)"), std::string::npos) << r;
    EXPECT_NE(r.find("`qwen3-235b-a22b-shard` (llama-server)"), std::string::npos) << r;
    EXPECT_NE(r.find("listen only on their node's private address"), std::string::npos) << r;
    EXPECT_NE(r.find("Copy `farm.env` to node(s) old, big and keep it secret"), std::string::npos) << r;
  }
  // The llama target's gateway script loads farm.env; the key never reaches a command line.
  files out = emit_ok("llama", in);
  const std::string& gw = find(out, "gateway.sh")->content;
  EXPECT_NE(gw.find("  load_backend_key AGIFARM_BACKEND_KEY || exit 1\n  export AGIFARM_BACKEND_KEY\n  exec "
                    "\"$AGIFARM_BIN\" serve"),
            std::string::npos)
      << gw;
  const std::string& old = find(out, "old.sh")->content;
  EXPECT_NE(old.find("  load_backend_key LLAMA_API_KEY || exit 1\n  export LLAMA_API_KEY\n  exec "
                     "\"${LLAMA_BIN_DIR}/llama-server\""),
            std::string::npos)
      << old;
  EXPECT_EQ(old.find("--api-key"), std::string::npos);
  EXPECT_EQ(find(out, "work.sh")->content.find("load_backend_key"), std::string::npos)
      << "work runs no keyed backend";
}

TEST(EmitMultiNode, SingleNodePlansNeedNoKey) {
  for (const char* plan : {"one-gpu", "two-3090", "eight-gpu"})
    for (const auto& t : k_farm_targets) {
      files out = emit_ok(t, load_plan(plan));
      EXPECT_EQ(find(out, k_farm_env_file), nullptr) << plan << " " << t;
      for (const auto& f : out)
        EXPECT_EQ(f.content.find("key_env"), std::string::npos) << plan << " " << f.path;
    }
}

}  // namespace
}  // namespace agifarm::emit::test
