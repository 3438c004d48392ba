// Unit tests of which deployment runs each candidate of a plan in `bench --strategies`.
#include "bench/strategies.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

namespace agifarm::bench {
namespace {

plan::doc_candidate cand(const std::string& model, const std::string& strategy, bool feasible, int max_ctx,
                         int agents, const std::string& why_not = "") {
  plan::doc_candidate c;
  c.model = model;
  c.strategy = strategy;
  c.feasible = feasible;
  c.max_ctx = max_ctx;
  c.agents = agents;
  c.why_not = why_not;
  return c;
}

plan::plan_document two_model_plan() {
  plan::plan_document d;
  d.models.resize(2);
  d.models[0].name = "a";
  d.models[0].file = "/m/a.gguf";
  d.models[1].name = "b";
  d.models[1].file = "/m/b.gguf";
  d.roles = {{"fast", "a", 2048, 2}, {"think", "b", 8192, 1}};
  d.candidates = {cand("*", "hybrid", true, 0, 3), cand("a", "cpu", true, 4096, 2),
                  cand("b", "cpu", true, 4096, 1), cand("b", "shard", true, 0, 1),
                  cand("b", "replica", false, 0, 1, "too big")};
  d.recommendation.candidate = 0;
  plan::backend_spec ba;
  ba.name = "a-0";
  ba.model = "a";
  ba.model_file = "/m/a.gguf";
  ba.args = {"-m", "/m/a.gguf", "-c", "4096", "-np", "2", "-ngl", "99", "-ts", "1,1", "-t", "4", "--cpu-moe"};
  ba.env = {{"CUDA_VISIBLE_DEVICES", "0"}, {"OTHER", "x"}};
  d.chosen.strategy = "hybrid";
  d.chosen.backends = {ba};
  plan::pool_spec pool;
  pool.name = "a";
  pool.aliases = {"fast"};
  pool.backends = {"a-0"};
  d.chosen.pools = {pool};
  return d;
}

TEST(bench_strategies, recommended_candidate_runs_the_plan_deployment) {
  auto d = two_model_plan();
  auto r = deployment_for_candidate(d, 0);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->strategy, "hybrid");
  ASSERT_EQ(r->backends.size(), 1u);
  EXPECT_EQ(r->backends[0].name, "a-0");
}

TEST(bench_strategies, cpu_candidate_drops_placement_and_sizes_slots_and_context_from_the_plan) {
  auto d = two_model_plan();
  auto r = deployment_for_candidate(d, 1);
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->backends.size(), 1u);
  const auto& b = r->backends[0];
  EXPECT_EQ(b.args,
            (std::vector<std::string>{"-m", "/m/a.gguf", "-t", "4", "-c", "4096", "-np", "2", "-ngl", "0"}));
  EXPECT_EQ(b.slots, 2);
  EXPECT_EQ(b.ctx, 4096);
  EXPECT_FALSE(b.env.contains("CUDA_VISIBLE_DEVICES"));
  EXPECT_EQ(b.env.at("OTHER"), "x");
  ASSERT_EQ(r->pools.size(), 1u);
  EXPECT_EQ(r->pools[0].aliases, std::vector<std::string>{"fast"});
  EXPECT_EQ(r->pools[0].backends, std::vector<std::string>{b.name});

  // model b is not in the deployment: built from its file; its role context is capped by max_ctx
  auto rb = deployment_for_candidate(d, 2);
  ASSERT_TRUE(rb) << rb.err().message;
  EXPECT_EQ(rb->backends[0].args,
            (std::vector<std::string>{"-m", "/m/b.gguf", "-c", "4096", "-np", "1", "-ngl", "0"}));
  EXPECT_EQ(rb->pools[0].aliases, std::vector<std::string>{"think"});
}

TEST(bench_strategies, other_strategies_and_infeasible_ones_say_why_they_cannot_run) {
  auto d = two_model_plan();
  auto s = deployment_for_candidate(d, 3);
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().message.find("recommended deployment only"), std::string::npos) << s.err().message;
  auto n = deployment_for_candidate(d, 4);
  ASSERT_FALSE(n);
  EXPECT_NE(n.err().message.find("too big"), std::string::npos);
  EXPECT_FALSE(deployment_for_candidate(d, 99));
}

TEST(bench_strategies, a_bad_plan_file_is_refused_naming_it) {
  strategies_options o;
  o.plan_file = "/no/such/plan.json";
  std::ostringstream progress;
  auto r = run_strategies(o, progress);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().exit_code, 2);
  EXPECT_NE(r.err().message.find("/no/such/plan.json"), std::string::npos);
}

}  // namespace
}  // namespace agifarm::bench
