#include "farm/gateway_config.hpp"

#include <gtest/gtest.h>

using namespace agifarm;

TEST(farm_gateway_config, pools_from_a_deployment_with_resolved_urls) {
  plan::deployment d;
  d.strategy = "hybrid";
  plan::backend_spec r0, r1, rpc;
  r0.name = "q8-r0";
  r0.slots = 4;
  r1.name = "q8-r1";
  r1.slots = 2;
  rpc.name = "rpc0";
  rpc.kind = plan::backend_kind::rpc_server;
  d.backends = {r0, r1, rpc};
  plan::pool_spec p;
  p.name = "qwen3-8b";
  p.aliases = {"fast"};
  p.backends = {"q8-r0", "q8-r1"};
  p.balance = plan::balance_policy::prefix_affinity;
  p.priority = 5;
  d.pools = {p};
  std::map<std::string, std::string> urls{{"q8-r0", "http://127.0.0.1:9001"},
                                          {"q8-r1", "http://127.0.0.1:9002"}};
  gateway::config base;
  base.queue.max = 7;
  auto c = farm::gateway_config_from_deployment(d, urls, base);
  ASSERT_TRUE(c.ok()) << c.err().message;
  ASSERT_EQ(c->pools.size(), 1u);
  EXPECT_EQ(c->pools[0].policy, gateway::balance::prefix_affinity);
  EXPECT_EQ(c->pools[0].slots_per_replica, 2);  // the smallest -np of the pool
  EXPECT_EQ(c->pools[0].priority, 5);
  EXPECT_EQ(c->pools[0].replicas[1].url, "http://127.0.0.1:9002");
  EXPECT_EQ(c->queue.max, 7);

  urls.erase("q8-r1");
  auto missing = farm::gateway_config_from_deployment(d, urls, base);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.err().message, "pool 'qwen3-8b': no URL resolved for backend 'q8-r1'");
  d.pools[0].backends = {"rpc0"};
  auto wrong = farm::gateway_config_from_deployment(d, {{"rpc0", "http://127.0.0.1:1"}}, base);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.err().message.find("is an rpc server"), std::string::npos);
  d.pools[0].backends = {"nope"};
  EXPECT_FALSE(farm::gateway_config_from_deployment(d, {}, base).ok());
}

TEST(farm_gateway_config, roles_of_one_model_get_their_own_priority_over_shared_replicas) {
  plan::deployment d;
  d.strategy = "replica";
  plan::backend_spec r0, r1;
  r0.name = "tiny-r0";
  r1.name = "tiny-r1";
  r0.slots = r1.slots = 2;
  d.backends = {r0, r1};
  plan::pool_spec p;
  p.name = "tiny";
  p.aliases = {"fast", "code", "think"};
  p.backends = {"tiny-r0", "tiny-r1"};
  p.priority = 2;
  d.pools = {p};
  std::map<std::string, std::string> urls{{"tiny-r0", "http://127.0.0.1:9001"},
                                          {"tiny-r1", "http://127.0.0.1:9002"}};
  auto c = farm::gateway_config_from_deployment(d, urls, {});
  ASSERT_TRUE(c.ok()) << c.err().message;
  std::map<std::string, const gateway::pool_config*> by_name;
  for (const auto& pc : c->pools) by_name[pc.name] = &pc;
  ASSERT_EQ(by_name.size(), 3u);
  EXPECT_EQ(by_name["fast"]->priority, 2);
  EXPECT_EQ(by_name["code"]->priority, 1);
  EXPECT_EQ(by_name["tiny"]->priority, 0);
  EXPECT_EQ(by_name["tiny"]->aliases, std::vector<std::string>{"think"});
  for (const auto& [name, pc] : by_name) {
    ASSERT_EQ(pc->replicas.size(), 2u) << name;
    EXPECT_EQ(pc->replicas[1].url, "http://127.0.0.1:9002") << name;
    EXPECT_EQ(pc->slots_per_replica, 2) << name;
  }
  // Roles of equal priority stay aliases of one pool.
  d.pools[0].aliases = {"think", "research"};
  auto same = farm::gateway_config_from_deployment(d, urls, {});
  ASSERT_TRUE(same.ok());
  ASSERT_EQ(same->pools.size(), 1u);
  EXPECT_EQ(same->pools[0].aliases.size(), 2u);
}
