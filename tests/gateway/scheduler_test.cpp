#include "gateway/scheduler.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

using namespace agifarm::gateway;
using namespace std::chrono_literals;

namespace {

// The fake clock: the scheduler only sees time through `now` arguments.
struct fake_clock {
  time_point t{std::chrono::seconds(1000)};
  time_point now() const { return t; }
  void advance(std::chrono::milliseconds d) { t += d; }
};

config two_replicas(int slots = 1, int queue_max = 4) {
  config c;
  c.queue.max = queue_max;
  c.limits.eject_after_failures = 2;
  c.pools.push_back({"m",
                     {"fast"},
                     balance::least_outstanding,
                     slots,
                     0,
                     {{"r0", "http://127.0.0.1:1"}, {"r1", "http://127.0.0.1:2"}}});
  return c;
}

struct recorder {
  std::vector<grant> got;
  grant_callback cb() {
    return [this](grant g) { got.push_back(g); };
  }
};

}  // namespace

TEST(gateway_scheduler, grants_then_queues_then_hands_freed_slots_fifo) {
  fake_clock clk;
  scheduler s(two_replicas());
  auto a = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  auto b = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  ASSERT_EQ(a.status, acquire_status::granted);
  ASSERT_EQ(b.status, acquire_status::granted);
  EXPECT_NE(a.l.replica, b.l.replica);
  recorder w1, w2;
  auto q1 = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, w1.cb());
  auto q2 = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, w2.cb());
  ASSERT_EQ(q1.status, acquire_status::queued);
  ASSERT_EQ(q2.status, acquire_status::queued);
  EXPECT_EQ(s.total_queued(), 2u);
  s.release(b.l, outcome::success, clk.now());
  ASSERT_EQ(w1.got.size(), 1u);
  EXPECT_EQ(w1.got[0].status, grant_status::granted);
  EXPECT_EQ(w1.got[0].l.replica, b.l.replica);
  EXPECT_TRUE(w2.got.empty());
  EXPECT_FALSE(s.cancel(q1.ticket));  // already granted
  EXPECT_TRUE(s.cancel(q2.ticket));   // still waiting: removed, never called
  s.release(a.l, outcome::success, clk.now());
  EXPECT_TRUE(w2.got.empty());
  EXPECT_EQ(s.total_outstanding(), 1u);
}

TEST(gateway_scheduler, queue_is_bounded_and_waits_time_out) {
  fake_clock clk;
  scheduler s(two_replicas(1, 2));
  s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  recorder w1, w2;
  EXPECT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 100ms, w1.cb()).status, acquire_status::queued);
  EXPECT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 300ms, w2.cb()).status, acquire_status::queued);
  EXPECT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {}).status, acquire_status::queue_full);
  clk.advance(99ms);
  s.expire(clk.now());
  EXPECT_TRUE(w1.got.empty());
  clk.advance(1ms);
  s.expire(clk.now());
  ASSERT_EQ(w1.got.size(), 1u);
  EXPECT_EQ(w1.got[0].status, grant_status::timed_out);
  EXPECT_TRUE(w2.got.empty());
  clk.advance(1s);
  s.expire(clk.now());
  ASSERT_EQ(w2.got.size(), 1u);
  EXPECT_EQ(s.total_queued(), 0u);
}

TEST(gateway_scheduler, priority_wins_freed_slots_of_shared_replicas) {
  config c;
  c.queue.max = 8;
  // One replica serves both roles; `fast` has priority over `think`.
  c.pools.push_back({"think", {}, balance::least_outstanding, 1, 0, {{"shared", "http://127.0.0.1:1"}}});
  c.pools.push_back({"fast", {}, balance::least_outstanding, 1, 10, {{"shared", "http://127.0.0.1:1"}}});
  fake_clock clk;
  scheduler s(c);
  auto busy = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  ASSERT_EQ(busy.status, acquire_status::granted);
  recorder think1, think2, fast1;
  s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, think1.cb());
  s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, think2.cb());
  s.acquire(1, {}, {}, clk.now(), clk.now() + 1s, fast1.cb());  // arrives last
  s.release(busy.l, outcome::success, clk.now());
  ASSERT_EQ(fast1.got.size(), 1u);
  EXPECT_EQ(fast1.got[0].l.pool, 1u);
  EXPECT_TRUE(think1.got.empty());
  s.release(fast1.got[0].l, outcome::success, clk.now());
  EXPECT_EQ(think1.got.size(), 1u);
  EXPECT_TRUE(think2.got.empty());
}

TEST(gateway_scheduler, ejects_at_most_half_a_pool_and_probes_bring_back) {
  config c;
  c.limits.eject_after_failures = 2;
  c.pools.push_back({"m",
                     {},
                     balance::least_outstanding,
                     4,
                     0,
                     {{"r0", "http://127.0.0.1:1"},
                      {"r1", "http://127.0.0.1:2"},
                      {"r2", "http://127.0.0.1:3"},
                      {"r3", "http://127.0.0.1:4"}}});
  fake_clock clk;
  scheduler s(c);
  auto fail_on = [&](std::size_t r) {
    bool ejected = false;
    for (int i = 0; i < 2; ++i) ejected = s.release(lease{0, r}, outcome::failure, clk.now());
    return ejected;
  };
  EXPECT_TRUE(fail_on(0));
  EXPECT_TRUE(fail_on(1));
  EXPECT_FALSE(fail_on(2));  // a third ejection would exceed half of 4
  EXPECT_EQ(s.ejected(), (std::vector<std::size_t>{0, 1}));
  // New requests avoid ejected replicas.
  for (int i = 0; i < 8; ++i) {
    auto a = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
    ASSERT_EQ(a.status, acquire_status::granted);
    EXPECT_GE(a.l.replica, 2u);
  }
  s.probe_result(0, false, clk.now());
  EXPECT_EQ(s.ejected().size(), 2u);
  s.probe_result(0, true, clk.now());
  EXPECT_EQ(s.ejected(), (std::vector<std::size_t>{1}));
  // A success resets the failure streak.
  s.release(lease{0, 3}, outcome::failure, clk.now());
  s.release(lease{0, 3}, outcome::success, clk.now());
  EXPECT_FALSE(s.release(lease{0, 3}, outcome::failure, clk.now()));
}

TEST(gateway_scheduler, single_replica_pool_is_never_ejected_and_not_ready_means_503) {
  config c;
  c.pools.push_back({"m", {}, balance::least_outstanding, 1, 0, {{"only", "http://127.0.0.1:1"}}});
  fake_clock clk;
  scheduler s(c);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(s.release(lease{0, 0}, outcome::failure, clk.now()));
  EXPECT_TRUE(s.set_ready("only", false, clk.now()));
  EXPECT_FALSE(s.set_ready("nope", false, clk.now()));
  EXPECT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {}).status, acquire_status::no_healthy);
  EXPECT_TRUE(s.set_ready("only", true, clk.now()));
  EXPECT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {}).status, acquire_status::granted);
}

TEST(gateway_scheduler, retries_exclude_tried_replicas) {
  fake_clock clk;
  scheduler s(two_replicas(2));
  auto a = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  ASSERT_EQ(a.status, acquire_status::granted);
  s.release(a.l, outcome::failure, clk.now());
  auto b = s.acquire(0, {}, {a.l.replica}, clk.now(), clk.now() + 1s, {});
  ASSERT_EQ(b.status, acquire_status::granted);
  EXPECT_NE(b.l.replica, a.l.replica);
  s.release(b.l, outcome::failure, clk.now());
  EXPECT_EQ(s.acquire(0, {}, {0, 1}, clk.now(), clk.now() + 1s, {}).status, acquire_status::exhausted);
}

TEST(gateway_scheduler, queued_waiter_is_served_when_a_replica_returns) {
  fake_clock clk;
  scheduler s(two_replicas());
  s.set_ready("r0", false, clk.now());
  auto busy = s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {});
  ASSERT_EQ(busy.status, acquire_status::granted);
  recorder w;
  ASSERT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 1s, w.cb()).status, acquire_status::queued);
  s.set_ready("r0", true, clk.now());
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].l.replica, *s.find_replica("r0"));
}

// Property test: random scripts of acquire / release (success, failure, neutral) / cancel / expire /
// probe / set_ready / clock advance. After every step: outstanding never exceeds slots, no replica's
// count goes negative, queues never exceed max, at most half of the pool is ejected, every queued
// waiter is called back at most once, and at the end (all released, time past every deadline) every
// waiter has been called exactly once or cancelled.
TEST(gateway_scheduler, property_random_scripts_keep_invariants) {
  for (unsigned seed = 1; seed <= 40; ++seed) {
    std::mt19937 rng(seed);
    config c;
    c.queue.max = 5;
    c.limits.eject_after_failures = 2;
    int slots = 1 + static_cast<int>(seed % 3);
    c.pools.push_back(
        {"a",
         {},
         seed % 2 ? balance::prefix_affinity : balance::least_outstanding,
         slots,
         1,
         {{"r0", "http://127.0.0.1:1"}, {"r1", "http://127.0.0.1:2"}, {"r2", "http://127.0.0.1:3"}}});
    c.pools.push_back({"b",
                       {},
                       balance::least_outstanding,
                       slots,
                       5,
                       {{"r2", "http://127.0.0.1:3"}, {"r3", "http://127.0.0.1:4"}}});
    fake_clock clk;
    scheduler s(c);
    std::vector<lease> held;
    std::map<std::uint64_t, int> calls;  // ticket -> callbacks
    std::set<std::uint64_t> cancelled;
    std::vector<std::uint64_t> waiting;
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::uint64_t> id_to_ticket;
    for (int step = 0; step < 400; ++step) {
      int op = static_cast<int>(rng() % 9);
      if (op <= 2) {
        std::size_t pool = rng() % 2;
        std::uint64_t id = next_id++;
        pick_request pr{rng() % 2 == 0, rng(), rng() % 4 == 0};
        auto r = s.acquire(pool, pr, {}, clk.now(), clk.now() + std::chrono::milliseconds(rng() % 200),
                           [&, id](grant g) {
                             calls[id]++;
                             if (g.status == grant_status::granted) held.push_back(g.l);
                           });
        if (r.status == acquire_status::granted) held.push_back(r.l);
        if (r.status == acquire_status::queued) {
          waiting.push_back(id);
          id_to_ticket[id] = r.ticket;
        }
      } else if (op <= 4 && !held.empty()) {
        std::size_t i = rng() % held.size();
        lease l = held[i];
        held.erase(held.begin() + static_cast<long>(i));
        s.release(l, static_cast<outcome>(rng() % 3), clk.now());
      } else if (op == 5 && !waiting.empty()) {
        auto id = waiting[rng() % waiting.size()];
        if (s.cancel(id_to_ticket[id])) cancelled.insert(id);
      } else if (op == 6) {
        clk.advance(std::chrono::milliseconds(rng() % 100));
        s.expire(clk.now());
      } else if (op == 7) {
        s.probe_result(rng() % 4, rng() % 2 == 0, clk.now());
      } else {
        s.set_ready(std::string("r").append(std::to_string(rng() % 4)), rng() % 4 != 0, clk.now());
      }
      // invariants
      auto rs = s.replica_states();
      int ejected_a = 0, ejected_b = 0;
      for (std::size_t r = 0; r < rs.size(); ++r) {
        ASSERT_GE(rs[r].outstanding, 0);
        ASSERT_LE(rs[r].outstanding, slots) << "seed " << seed << " step " << step;
        if (rs[r].ejected && rs[r].name != "r3") ejected_a++;
        if (rs[r].ejected && (rs[r].name == "r2" || rs[r].name == "r3")) ejected_b++;
      }
      EXPECT_LE(ejected_a * 2, 3);
      EXPECT_LE(ejected_b * 2, 2);
      for (const auto& p : s.pool_states()) ASSERT_LE(p.queued, 5u);
      for (const auto& [id, n] : calls) ASSERT_LE(n, 1) << "waiter " << id << " called twice";
      std::uint64_t total = 0;
      for (const auto& r : rs) total += static_cast<std::uint64_t>(r.outstanding);
      ASSERT_EQ(total, held.size());
    }
    // Drain: release everything (which may grant waiters, which we release too), then expire the rest.
    for (int guard = 0; guard < 10000 && !held.empty(); ++guard) {
      lease l = held.back();
      held.pop_back();
      s.release(l, outcome::success, clk.now());
    }
    clk.advance(std::chrono::seconds(10));
    s.expire(clk.now());
    while (!held.empty()) {
      s.release(held.back(), outcome::success, clk.now());
      held.pop_back();
    }
    EXPECT_EQ(s.total_queued(), 0u);
    EXPECT_EQ(s.total_outstanding(), 0u);
    for (auto id : waiting) {
      int n = calls.count(id) ? calls[id] : 0;
      EXPECT_EQ(n + static_cast<int>(cancelled.count(id)), 1) << "seed " << seed << " waiter " << id;
    }
  }
}

// On demand: a pool with no ready replica queues (and asks for a load) instead of refusing; the
// owner retires idle replicas atomically and refuses the queue with a reason when the model cannot load.
TEST(gateway_scheduler, on_demand_pool_queues_while_loading_retires_only_idle_and_refuses_with_a_reason) {
  fake_clock clk;
  config c = two_replicas();
  c.pools[0].on_demand = true;
  scheduler s(c);
  ASSERT_TRUE(s.set_ready("r0", false, clk.now()));
  ASSERT_TRUE(s.set_ready("r1", false, clk.now()));
  recorder w1, w2;
  auto q1 = s.acquire(0, {}, {}, clk.now(), clk.now() + 10s, w1.cb());
  ASSERT_EQ(q1.status, acquire_status::queued);
  EXPECT_TRUE(q1.wants_load);
  EXPECT_EQ(s.pool_states()[0].oldest_wait, clk.now());
  clk.advance(5ms);
  auto q2 = s.acquire(0, {}, {}, clk.now(), clk.now() + 10s, w2.cb());
  ASSERT_EQ(q2.status, acquire_status::queued);
  // Loaded: both waiters are granted at once (the batch), marking the replica used.
  EXPECT_FALSE(s.retire_if_idle({0, 1}));  // waiters queued: not idle
  ASSERT_TRUE(s.set_ready("r0", true, clk.now()));
  ASSERT_EQ(w1.got.size(), 1u);
  EXPECT_EQ(w1.got[0].status, grant_status::granted);
  EXPECT_EQ(s.replica_states()[0].last_used, clk.now());
  ASSERT_TRUE(s.set_ready("r1", true, clk.now()));
  ASSERT_EQ(w2.got.size(), 1u);
  EXPECT_FALSE(s.retire_if_idle({0, 1}));  // leases in flight
  s.release(w1.got[0].l, outcome::success, clk.now());
  EXPECT_FALSE(s.retire_if_idle({0, 1}));
  s.release(w2.got[0].l, outcome::success, clk.now());
  EXPECT_TRUE(s.retire_if_idle({0, 1}));
  EXPECT_FALSE(s.replica_states()[0].ready);
  EXPECT_FALSE(s.replica_states()[1].ready);
  // Cannot load: every waiter gets `refused` and the reason.
  recorder w3;
  ASSERT_EQ(s.acquire(0, {}, {}, clk.now(), clk.now() + 10s, w3.cb()).status, acquire_status::queued);
  s.refuse_waiters(0, "model 'm' needs 2 GiB on CUDA0; pinned big would have to go");
  ASSERT_EQ(w3.got.size(), 1u);
  EXPECT_EQ(w3.got[0].status, grant_status::refused);
  EXPECT_EQ(s.refusal(0), "model 'm' needs 2 GiB on CUDA0; pinned big would have to go");
  EXPECT_EQ(s.total_queued(), 0u);
  // A pool that is not on demand still answers no_healthy at once.
  scheduler plain(two_replicas());
  plain.set_ready("r0", false, clk.now());
  plain.set_ready("r1", false, clk.now());
  EXPECT_EQ(plain.acquire(0, {}, {}, clk.now(), clk.now() + 1s, {}).status, acquire_status::no_healthy);
}
