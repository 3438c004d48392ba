// Unit tests of the bench statistics: percentiles, distributions, per-pool summaries and series.
#include "bench/stats.hpp"

#include <gtest/gtest.h>

namespace agifarm::bench {
namespace {

request_record rec(std::string pool, double start, double end, bool ok, double ttft = -1,
                   std::vector<double> itl = {}, std::uint64_t p = 0, std::uint64_t c = 0,
                   std::string err = {}) {
  request_record r;
  r.pool = std::move(pool);
  r.start_s = start;
  r.end_s = end;
  r.ok = ok;
  r.ttft_s = ttft;
  r.itl_s = std::move(itl);
  r.prompt_tokens = p;
  r.completion_tokens = c;
  r.error = std::move(err);
  return r;
}

TEST(bench_stats, percentile_interpolates_between_closest_ranks_like_numpy) {
  std::vector<double> v{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_DOUBLE_EQ(percentile(v, 50), 5.5);
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 10);
  EXPECT_NEAR(percentile(v, 95), 9.55, 1e-12);
  EXPECT_NEAR(percentile(v, 99), 9.91, 1e-12);
  EXPECT_DOUBLE_EQ(percentile({7, 3, 5}, 50), 5) << "input need not be sorted";
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  EXPECT_DOUBLE_EQ(percentile({4}, 99), 4);
}

TEST(bench_stats, distribution_has_count_mean_min_max) {
  auto d = distribution_of({0.2, 0.1, 0.3});
  EXPECT_EQ(d.count, 3u);
  EXPECT_NEAR(d.mean, 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(d.min, 0.1);
  EXPECT_DOUBLE_EQ(d.max, 0.3);
  EXPECT_DOUBLE_EQ(d.p50, 0.2);
  EXPECT_EQ(distribution_of({}).count, 0u);
}

TEST(bench_stats, summary_groups_by_pool_counts_errors_by_kind_and_divides_tokens_by_wall_time) {
  std::vector<request_record> rs{
      rec("a", 0.0, 1.0, true, 0.1, {0.01, 0.03}, 100, 10),
      rec("a", 0.5, 2.5, true, 0.3, {0.02}, 200, 20),
      rec("a", 1.0, 1.2, false, -1, {}, 0, 0, "http_503"),
      rec("b", 0.0, 3.5, true, 0.2, {0.05}, 50, 5),
      rec("b", 0.0, 0.1, false, -1, {}, 0, 0, "connect"),
      rec("b", 0.0, 0.1, false, -1, {}, 0, 0, "connect"),
  };
  auto s = summarize(rs, 4.0);
  ASSERT_EQ(s.pools.size(), 2u);
  const auto& a = s.pools[0];
  EXPECT_EQ(a.pool, "a");
  EXPECT_EQ(a.requests, 3u);
  EXPECT_EQ(a.ok, 2u);
  EXPECT_EQ(a.errors.at("http_503"), 1u);
  EXPECT_EQ(a.prompt_tokens, 300u);
  EXPECT_EQ(a.completion_tokens, 30u);
  EXPECT_DOUBLE_EQ(a.prompt_tps, 75);
  EXPECT_DOUBLE_EQ(a.completion_tps, 7.5);
  EXPECT_EQ(a.ttft.count, 2u);
  EXPECT_DOUBLE_EQ(a.ttft.p50, 0.2);
  EXPECT_EQ(a.itl.count, 3u);
  EXPECT_DOUBLE_EQ(a.itl.p50, 0.02);
  EXPECT_EQ(a.e2e.count, 2u) << "failed requests have no end-to-end latency";
  EXPECT_DOUBLE_EQ(a.e2e.max, 2.0);
  const auto& b = s.pools[1];
  EXPECT_EQ(b.errors.at("connect"), 2u);
  EXPECT_EQ(s.total.requests, 6u);
  EXPECT_EQ(s.total.ok, 3u);
  EXPECT_EQ(s.total.prompt_tokens, 350u);
  // series: one bucket per second, by finishing time, clamped to the last second
  ASSERT_EQ(a.series.size(), 4u);
  EXPECT_EQ(a.series[1].requests, 2u);  // ended at 1.0 and 1.2
  EXPECT_EQ(a.series[1].errors, 1u);
  EXPECT_EQ(a.series[2].completion_tokens, 20u);
  EXPECT_EQ(b.series[3].prompt_tokens, 50u);
  std::uint64_t sum = 0;
  for (const auto& p : s.total.series) sum += p.requests;
  EXPECT_EQ(sum, 6u);
}

TEST(bench_stats, late_finishers_land_in_the_last_bucket_and_json_has_the_fields) {
  auto s = summarize({rec("a", 0, 9.7, true, 0.5, {}, 1, 1)}, 2.0);
  ASSERT_EQ(s.pools.size(), 1u);
  ASSERT_EQ(s.pools[0].series.size(), 2u);
  EXPECT_EQ(s.pools[0].series[1].requests, 1u);
  auto j = to_json(s);
  EXPECT_EQ(j.at("pools").as_array().size(), 1u);
  auto& p = j.at("pools").as_array()[0].as_object();
  EXPECT_EQ(p.at("requests").as_uint64(), 1u);
  EXPECT_TRUE(p.at("ttft_s").as_object().contains("p99"));
  EXPECT_TRUE(j.at("total").is_object());
}

}  // namespace
}  // namespace agifarm::bench
