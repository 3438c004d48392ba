#include "farm/farm_file.hpp"

#include <gtest/gtest.h>

namespace agifarm::farm {
namespace {

result<farm_file> parse(const std::string& text) {
  return parse_farm_file(text, "farm.yaml", "/base", "/home/u");
}

void expect_error(const std::string& text, const std::string& where, const std::string& key) {
  auto f = parse(text);
  ASSERT_FALSE(f.ok()) << text;
  EXPECT_EQ(f.err().exit_code, 2);
  EXPECT_NE(f.err().message.find(where), std::string::npos) << f.err().message;
  EXPECT_NE(f.err().message.find(key), std::string::npos) << f.err().message;
}

TEST(farm_file, reads_models_roles_strategy_paths_supervisor_and_gateway_keys) {
  auto f = parse(R"(
models:
  qwen3-8b: ~/models/q8.gguf
  qwen3-30b: {file: m/q30.gguf, replicas: 2, args: ["-ngl", "99"]}
roles:
  fast: {model: qwen3-8b, ctx: 8192, agents: 4}
  think: {model: qwen3-30b, ctx: 32768}
strategy: {qwen3-30b: expert_offload}
llama_bin: /opt/llama/bin
state_dir: ~/state
supervisor: {max_failures: 3, backoff_initial_s: 0.5, probe_interval_s: 0}
listen: 127.0.0.1:9090
api_keys: [{name: me, key: secret-key-1}]
)");
  ASSERT_TRUE(f.ok()) << f.err().message;
  ASSERT_EQ(f->models.size(), 2u);
  EXPECT_EQ(f->models[0].name, "qwen3-8b");
  EXPECT_EQ(f->models[0].file, "/home/u/models/q8.gguf");
  EXPECT_EQ(f->models[1].file, "/base/m/q30.gguf");
  EXPECT_EQ(f->models[1].replicas, 2);
  EXPECT_EQ(f->models[1].args, (std::vector<std::string>{"-ngl", "99"}));
  ASSERT_EQ(f->roles.size(), 2u);
  EXPECT_EQ(f->roles[0].ctx, 8192);
  EXPECT_EQ(f->roles[0].agents, 4);
  EXPECT_EQ(f->roles[1].agents, 1);
  EXPECT_EQ(f->strategy_per_model.at("qwen3-30b"), "expert_offload");
  EXPECT_EQ(f->llama_bin, "/opt/llama/bin");
  EXPECT_EQ(f->state_dir, "/home/u/state");
  EXPECT_EQ(f->supervisor.max_failures, 3);
  EXPECT_EQ(f->supervisor.backoff_initial_s, 0.5);
  EXPECT_EQ(f->supervisor.probe_interval_s, 0.0);
  EXPECT_EQ(f->gateway.listen_port, 9090);
  ASSERT_EQ(f->gateway.api_keys.size(), 1u);
  EXPECT_EQ(f->gateway.api_keys[0].key, "secret-key-1");
}

TEST(farm_file, empty_file_gives_defaults) {
  auto f = parse("");
  ASSERT_TRUE(f.ok()) << f.err().message;
  EXPECT_TRUE(f->models.empty());
  EXPECT_EQ(f->gateway.listen_host, "127.0.0.1");
  EXPECT_EQ(f->gateway.listen_port, 8080);
}

TEST(farm_file, errors_name_file_line_column_and_key) {
  expect_error("models:\n  a: x.gguf\nroles:\n  fast: {model: a, ctx: many}\n",
               "farm.yaml:4:", "roles.fast.ctx");
  expect_error("models:\n  a: x.gguf\nroles:\n  fast: {model: b}\n", "farm.yaml:4:17", "roles.fast.model");
  expect_error("models:\n  a: x.gguf\nbogus: 1\n", "farm.yaml:3:1", "bogus");
  expect_error("models:\n  a: {file: x.gguf, replica: 2}\n", "farm.yaml:2:", "models.a.replica");
  expect_error("models:\n  a: {replicas: 2}\n", "farm.yaml:2:", "models.a.file");
  expect_error("models: [a, b]\n", "farm.yaml:1:9", "models");
  expect_error("strategy: magic\n", "farm.yaml:1:11", "strategy");
  expect_error("supervisor: {max_failures: 0}\n", "farm.yaml:1:", "supervisor.max_failures");
  expect_error("pools: []\n", "farm.yaml:1:1", "pools");
  expect_error("models:\n  a: x.gguf\n  a: y.gguf\n", "farm.yaml:3:", "models.a");
  expect_error("listen: nowhere\n", "farm.yaml:1:", "listen");
  expect_error("models:\n  a: x.gguf\n roles: 1\n", "farm.yaml:", "YAML syntax error");
  expect_error("- 1\n- 2\n", "farm.yaml:1:1", "(top level)");
}

}  // namespace
}  // namespace agifarm::farm
