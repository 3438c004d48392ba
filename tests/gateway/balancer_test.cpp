#include "gateway/balancer.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace agifarm::gateway;

TEST(gateway_balancer, least_outstanding_picks_the_least_loaded_and_spreads_ties) {
  auto b = make_least_outstanding();
  std::vector<replica_view> v{{0, 3, 4}, {1, 1, 4}, {2, 2, 4}};
  EXPECT_EQ(b->choose(v, {}), 1u);
  // Per-slot load: 2 of 8 beats 1 of 2.
  std::vector<replica_view> w{{0, 1, 2}, {1, 2, 8}};
  EXPECT_EQ(b->choose(w, {}), 1u);
  std::vector<replica_view> full{{0, 2, 2}, {1, 4, 4}};
  EXPECT_FALSE(b->choose(full, {}));
  EXPECT_FALSE(b->choose({}, {}));
  std::vector<replica_view> tie{{0, 0, 1}, {1, 0, 1}, {2, 0, 1}};
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 30; ++i) seen[*b->choose(tie, {})]++;
  EXPECT_EQ(seen.size(), 3u);
}

TEST(gateway_balancer, prefix_affinity_is_sticky_and_spreads_keys) {
  std::vector<std::string> names{"a", "b", "c", "d"};
  auto b = make_prefix_affinity(names);
  std::vector<replica_view> idle{{0, 0, 8}, {1, 0, 8}, {2, 0, 8}, {3, 0, 8}};
  std::map<std::size_t, int> homes;
  for (std::uint64_t k = 1; k <= 400; ++k) {
    pick_request r{true, k * 0x9e3779b97f4a7c15ull};
    auto first = b->choose(idle, r);
    ASSERT_TRUE(first);
    EXPECT_EQ(b->choose(idle, r), first);  // same key, same replica
    homes[*first]++;
  }
  ASSERT_EQ(homes.size(), 4u);
  for (auto& [r, n] : homes) EXPECT_GT(n, 40) << "replica " << r;  // 64 virtual nodes: roughly even
  // Removing one candidate only moves the keys that lived on it.
  std::vector<replica_view> three{{0, 0, 8}, {1, 0, 8}, {3, 0, 8}};
  for (std::uint64_t k = 1; k <= 200; ++k) {
    pick_request r{true, k * 0x9e3779b97f4a7c15ull};
    auto home = idle[*b->choose(idle, r)].id;
    auto now = three[*b->choose(three, r)].id;
    if (home != 2) {
      EXPECT_EQ(now, home);
    }
  }
}

TEST(gateway_balancer, prefix_affinity_respects_the_load_bound) {
  std::vector<std::string> names{"a", "b"};
  auto b = make_prefix_affinity(names, 1.25);
  pick_request r{true, 42};
  std::vector<replica_view> v{{0, 0, 100}, {1, 0, 100}};
  auto home = *b->choose(v, r);
  // Pile load on the home replica: once it exceeds ceil(1.25 * (total+1) / 2), the key spills over.
  v[home].outstanding = 10;
  v[1 - home].outstanding = 2;
  EXPECT_EQ(*b->choose(v, r), 1 - home);
  v[home].outstanding = 3;
  v[1 - home].outstanding = 3;
  EXPECT_EQ(*b->choose(v, r), home);
  // Home replica over the bound (4 of 4 busy, the other idle: bound ceil(1.25*5/2) = 4): spill.
  std::vector<replica_view> full{{0, 4, 8}, {1, 4, 8}};
  full[1 - home].outstanding = 0;
  EXPECT_EQ(*b->choose(full, r), 1 - home);
  // Full home replica, the other busy too but with a free slot: within the bound, wait for home.
  std::vector<replica_view> busy{{0, 2, 2}, {1, 2, 2}};
  busy[1 - home].outstanding = 1;
  EXPECT_FALSE(b->choose(busy, r));
  // Without a key it balances like least outstanding.
  std::vector<replica_view> w{{0, 5, 8}, {1, 1, 8}};
  EXPECT_EQ(*b->choose(w, {}), 1u);
}

// Property: for random candidate sets and loads, whatever the policy, a choice is always a candidate
// with a free slot, and there is a choice whenever some candidate has a free slot.
TEST(gateway_balancer, property_choice_is_a_free_candidate) {
  std::mt19937 rng(7);
  std::vector<std::string> names;
  for (int i = 0; i < 8; ++i) names.push_back(std::string("r").append(std::to_string(i)));
  std::vector<std::unique_ptr<balancer>> policies;
  policies.push_back(make_least_outstanding());
  policies.push_back(make_prefix_affinity(names));
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<replica_view> v;
    bool any_free = false;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (rng() % 3 == 0) continue;
      int slots = 1 + static_cast<int>(rng() % 4);
      int out = static_cast<int>(rng() % (slots + 1));
      any_free = any_free || out < slots;
      v.push_back({i, out, slots});
    }
    pick_request r{rng() % 2 == 0, rng()};
    for (std::size_t pi = 0; pi < policies.size(); ++pi) {
      auto c = policies[pi]->choose(v, r);
      // Least outstanding always places when it can; affinity may choose to wait for a busy home
      // replica, but only for a keyed request.
      if (pi == 0 || !r.has_key) {
        EXPECT_EQ(c.has_value(), any_free);
      }
      if (c) {
        EXPECT_TRUE(any_free);
      }
      if (c) {
        ASSERT_LT(*c, v.size());
        EXPECT_LT(v[*c].outstanding, v[*c].slots);
      }
    }
  }
}
