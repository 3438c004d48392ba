#include "gateway/config.hpp"

#include <gtest/gtest.h>

using namespace agifarm::gateway;

namespace {

const char* k_good = R"(# farm
listen: 0.0.0.0:9000
threads: 2
api_keys:
  - name: alice
    key: sk-alice-123456
    models: [fast, qwen3-32b]
    rate_per_minute: 60
  - name: bob
    key_env: BOB_KEY
gateway:
  max_body_bytes: 1000000
  header_timeout_ms: 2000
  first_byte_timeout_ms: 5000
  max_connections: 100
  retries: 3
  queue: {max: 10, timeout_ms: 1500}
  usage_db: /tmp/usage.db
pools:
  - name: qwen3-8b
    aliases: [fast, code]
    balance: prefix_affinity
    slots_per_replica: 4
    priority: 10
    replicas:
      - {name: r0, url: "http://127.0.0.1:8081"}
      - {name: r1, url: "http://127.0.0.1:8082/"}
  - name: qwen3-32b
    aliases: [think]
    replicas:
      - {url: "http://127.0.0.1:8083"}
models: ignored-by-the-gateway
)";

env_lookup env_with_bob() {
  return [](const std::string& n) -> std::optional<std::string> {
    if (n == "BOB_KEY") return std::string("sk-bob-abcdefgh");
    return std::nullopt;
  };
}

std::string error_of(const std::string& yaml) {
  auto c = config_from_yaml(yaml, "farm.yaml", env_with_bob());
  EXPECT_FALSE(c.ok()) << yaml;
  return c.ok() ? std::string() : c.err().message;
}

}  // namespace

TEST(gateway_config, reads_every_key) {
  auto c = config_from_yaml(k_good, "farm.yaml", env_with_bob());
  ASSERT_TRUE(c.ok()) << c.err().message;
  EXPECT_EQ(c->listen_host, "0.0.0.0");
  EXPECT_EQ(c->listen_port, 9000);
  EXPECT_EQ(c->threads, 2);
  ASSERT_EQ(c->api_keys.size(), 2u);
  EXPECT_EQ(c->api_keys[0].name, "alice");
  EXPECT_EQ(c->api_keys[0].rate_per_minute, 60);
  EXPECT_EQ(c->api_keys[0].models, (std::vector<std::string>{"fast", "qwen3-32b"}));
  EXPECT_EQ(c->api_keys[1].key, "sk-bob-abcdefgh");
  EXPECT_EQ(c->limits.max_body_bytes, 1000000u);
  EXPECT_EQ(c->limits.header_timeout_ms, 2000);
  EXPECT_EQ(c->limits.first_byte_timeout_ms, 5000);
  EXPECT_EQ(c->limits.max_connections, 100);
  EXPECT_EQ(c->limits.retries, 3);
  EXPECT_EQ(c->queue.max, 10);
  EXPECT_EQ(c->queue.timeout_ms, 1500);
  EXPECT_EQ(c->usage_db, "/tmp/usage.db");
  ASSERT_EQ(c->pools.size(), 2u);
  EXPECT_EQ(c->pools[0].policy, balance::prefix_affinity);
  EXPECT_EQ(c->pools[0].slots_per_replica, 4);
  EXPECT_EQ(c->pools[0].priority, 10);
  EXPECT_EQ(c->pools[0].replicas[1].url, "http://127.0.0.1:8082/");
  EXPECT_EQ(c->pools[1].replicas[0].name, "qwen3-32b-0");
  EXPECT_EQ(c->pools[1].policy, balance::least_outstanding);
}

TEST(gateway_config, errors_name_file_line_column_and_key) {
  std::string y =
      "pools:\n  - name: a\n    balance: round_robin\n    replicas: [{url: 'http://127.0.0.1:1'}]\n";
  EXPECT_EQ(
      error_of(y),
      "farm.yaml:3:14: pools[0].balance: 'round_robin' is not one of least_outstanding, prefix_affinity");
  y = "gateway:\n  retries: lots\npools: []\n";
  EXPECT_EQ(error_of(y), "farm.yaml:2:12: gateway.retries: expected an integer, got 'lots'");
  y = "gateway:\n  retrys: 2\n";
  EXPECT_NE(error_of(y).find("farm.yaml:2:3: gateway.retrys: unknown key"), std::string::npos);
  y = "pools:\n  - name: a\n    replicas: [{url: 'https://x:1'}]\n";
  EXPECT_NE(error_of(y).find("farm.yaml:3:22: pools[0].replicas[0].url: 'https://x:1' is not an http:// URL"),
            std::string::npos)
      << error_of(y);
  y = "listen: 127.0.0.1\npools: []\n";
  EXPECT_NE(error_of(y).find("farm.yaml:1:9: listen: '127.0.0.1' has no :port"), std::string::npos)
      << error_of(y);
  y = "pools:\n  - name: a\n";
  EXPECT_EQ(error_of(y), "farm.yaml:2:5: pools[0].replicas: missing");
  y = "api_keys:\n  - {name: k, key_env: NOPE}\npools: []\n";
  EXPECT_NE(error_of(y).find("farm.yaml:2:24: api_keys[0].key_env: environment variable NOPE is not set"),
            std::string::npos)
      << error_of(y);
  y = "pools: [\n";
  EXPECT_NE(error_of(y).find("farm.yaml:"), std::string::npos);
  EXPECT_NE(error_of(y).find("YAML syntax"), std::string::npos);
  EXPECT_EQ(error_of(""), "farm.yaml: the file is empty");
  y = "gateway:\n  queue: {max: -1}\n";
  EXPECT_NE(error_of(y).find("farm.yaml:2:16: gateway.queue.max: -1 is out of range"), std::string::npos)
      << error_of(y);
}

TEST(gateway_config, whole_config_checks_name_the_pool_or_key) {
  std::string pools =
      "pools:\n  - {name: a, aliases: [fast], replicas: [{name: r, url: 'http://127.0.0.1:1'}]}\n";
  EXPECT_NE(
      error_of("listen: 0.0.0.0:80\n" + pools).find("without api_keys the gateway binds to loopback only"),
      std::string::npos);
  EXPECT_NE(error_of(pools + "  - {name: b, aliases: [fast], replicas: [{url: 'http://127.0.0.1:2'}]}\n")
                .find("pool 'b': alias 'fast' is already"),
            std::string::npos);
  EXPECT_NE(error_of(pools + "  - {name: b, replicas: [{name: r, url: 'http://127.0.0.1:2'}]}\n")
                .find("replica 'r' has two URLs"),
            std::string::npos);
  EXPECT_NE(error_of("api_keys: [{name: k, key: 12345678abc, models: [nope]}]\n" + pools)
                .find("api key 'k': model 'nope' is neither a pool nor an alias"),
            std::string::npos);
  EXPECT_NE(error_of("api_keys: [{name: k, key: short}]\n" + pools).find("at least 8 characters"),
            std::string::npos);
  // A replica shared by two pools with one URL is fine.
  auto ok =
      config_from_yaml(pools + "  - {name: b, replicas: [{name: r, url: 'http://127.0.0.1:1'}]}\n", "f", {});
  EXPECT_TRUE(ok.ok()) << ok.err().message;
}

TEST(gateway_config, host_port_and_urls) {
  EXPECT_EQ(parse_host_port("[::1]:8080")->host, "::1");
  EXPECT_EQ(parse_host_port("[::1]:8080")->port, 8080);
  EXPECT_FALSE(parse_host_port("a:99999").ok());
  EXPECT_FALSE(parse_host_port(":80").ok());
  EXPECT_FALSE(parse_http_url("http://127.0.0.1:80/v1").ok());
  EXPECT_FALSE(parse_http_url("http://127.0.0.1").ok());
  EXPECT_EQ(parse_http_url("http://localhost:81")->port, 81);
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(load_config("/nonexistent/farm.yaml").ok());
  EXPECT_EQ(load_config("/nonexistent/farm.yaml").err().message,
            "/nonexistent/farm.yaml: cannot open the config file");
}

TEST(gateway_config, a_replica_may_carry_the_key_its_backend_requires) {
  auto c = config_from_yaml(
      "pools:\n  - name: a\n    replicas:\n      - {name: r0, url: 'http://10.0.0.2:8081', key: s3cr3t-k3y}\n"
      "      - {name: r1, url: 'http://10.0.0.3:8081', key_env: BOB_KEY}\n"
      "      - {name: r2, url: 'http://127.0.0.1:8081'}\n",
      "farm.yaml", env_with_bob());
  ASSERT_TRUE(c.ok()) << c.err().message;
  EXPECT_EQ(c->pools[0].replicas[0].api_key, "s3cr3t-k3y");
  EXPECT_EQ(c->pools[0].replicas[1].api_key, "sk-bob-abcdefgh");
  EXPECT_EQ(c->pools[0].replicas[2].api_key, "");
  EXPECT_NE(
      error_of("pools:\n  - name: a\n    replicas: [{url: 'http://127.0.0.1:1', key: a, key_env: BOB_KEY}]\n")
          .find("pools[0].replicas[0]: give either key or key_env, not both"),
      std::string::npos);
  EXPECT_NE(error_of("pools:\n  - name: a\n    replicas: [{url: 'http://127.0.0.1:1', key_env: NOPE}]\n")
                .find("pools[0].replicas[0].key_env: environment variable NOPE is not set"),
            std::string::npos);
}
