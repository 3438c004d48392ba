// The real gateway server (in process) over real fixture backend processes with fault injection:
// relay, failover before the first byte, mid-stream death, hung backends, limits, keys, queueing,
// usage persistence, metrics (checked by promtool), client disconnects and fd leaks.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <fstream>
#include <thread>

#include "gw_test_util.hpp"

using namespace agifarm;
using namespace agifarm::gwtest;

namespace {

struct running_gateway {
  explicit running_gateway(gateway::config c) : srv(std::move(c)) {
    auto s = srv.start();
    if (!s) throw std::runtime_error(s.err().message);
  }
  int port() const { return srv.port(); }
  gateway::server srv;
};

}  // namespace

TEST(gateway_fixture, relays_json_and_sse_and_lists_models) {
  auto a = start_fixture();
  auto b = start_fixture({"--chunks", "5", "--chunk-delay-ms", "2"});
  running_gateway gw(base_config({a.url(), b.url()}));
  for (int i = 0; i < 6; ++i) {
    auto r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
    ASSERT_EQ(status_of(r.data), 200) << r.data;
    auto v = boost::json::parse(body_of(r.data));
    EXPECT_EQ(v.at("object").as_string(), "chat.completion");
    auto s = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat_stream));
    ASSERT_EQ(status_of(s.data), 200) << s.data;
    EXPECT_NE(s.data.find("Content-Type: text/event-stream"), std::string::npos);
    std::string sse = body_of(s.data);
    EXPECT_NE(sse.find("data: [DONE]\n\n"), std::string::npos) << sse;
    EXPECT_NE(sse.find("tok4 "), std::string::npos);
  }
  auto m = test::http_request(gw.port(), "GET", "/v1/models");
  ASSERT_EQ(m.status, 200);
  auto v = boost::json::parse(m.body);
  EXPECT_EQ(v.at("data").as_array().size(), 2u);
  auto h = test::http_request(gw.port(), "GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_NE(h.body.find("\"usable_replicas\":2"), std::string::npos);
  // Keep-alive: several requests on one connection.
  int fd = connect_loopback(gw.port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(send_all(fd, post("/v1/chat/completions", k_chat, {}, false)));
    std::string got;
    char buf[8192];
    while (got.find("\"total_tokens\":16}}") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0);
      got.append(buf, static_cast<std::size_t>(n));
    }
    EXPECT_EQ(status_of(got), 200);
  }
  ::close(fd);
  // Token usage was read from the backend responses.
  auto metrics = test::http_request(gw.port(), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("agifarm_gateway_completion_tokens_total{pool=\"tiny\"}"), std::string::npos);
  EXPECT_EQ(metrics.body.find("agifarm_gateway_completion_tokens_total{pool=\"tiny\"} 0\n"),
            std::string::npos);
}

TEST(gateway_fixture, fails_over_before_first_byte_and_ejects_then_restores) {
  auto good = start_fixture();
  int dead_port = test::free_port();  // nothing listens: connection refused
  auto c = base_config({"http://127.0.0.1:" + std::to_string(dead_port), good.url()});
  running_gateway gw(c);
  for (int i = 0; i < 20; ++i) {
    auto r = raw_exchange(gw.port(), post("/v1/chat/completions", i % 2 ? k_chat : k_chat_stream));
    ASSERT_EQ(status_of(r.data), 200) << r.data;
  }
  auto st = gw.srv.stats();
  EXPECT_FALSE(st.replicas[0].healthy);  // ejected after repeated refusals
  EXPECT_TRUE(st.replicas[1].healthy);
  // Bring the dead replica up on its port: the active /health probe puts it back.
  auto revived = start_fixture({}, dead_port);
  ASSERT_TRUE(test::wait_until([&] { return gw.srv.stats().replicas[0].healthy; }, 10s));
  auto metrics = test::http_request(gw.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("agifarm_gateway_retries_total{pool=\"tiny\"} "), std::string::npos);
  EXPECT_EQ(metrics.find("agifarm_gateway_retries_total{pool=\"tiny\"} 0\n"), std::string::npos);
}

TEST(gateway_fixture, retries_500_and_hung_backends_and_gives_up_cleanly) {
  auto bad = start_fixture({"--mode", "status500"});
  auto hung = start_fixture({"--mode", "hang"});
  auto dies = start_fixture({"--mode", "die_before_body"});
  auto good = start_fixture();
  auto c = base_config({bad.url(), hung.url(), dies.url(), good.url()});
  c.limits.first_byte_timeout_ms = 300;
  c.limits.retries = 3;
  c.limits.eject_after_failures = 1000;  // keep every replica in play: each request meets the faults
  running_gateway gw(c);
  for (int i = 0; i < 8; ++i) {
    auto r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat_stream));
    ASSERT_EQ(status_of(r.data), 200) << r.data;
    EXPECT_NE(body_of(r.data).find("[DONE]"), std::string::npos);
  }
  // Only a hung replica: 504 naming the first-byte timeout.
  auto only_hung = base_config({hung.url()});
  only_hung.limits.first_byte_timeout_ms = 200;
  only_hung.limits.retries = 1;
  running_gateway gw2(only_hung);
  auto r = raw_exchange(gw2.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 504) << r.data;
  EXPECT_NE(r.data.find("first_byte_timeout_ms"), std::string::npos);
  // Only a 500 replica: after the retries the last 500 is relayed as it is.
  running_gateway gw3(base_config({bad.url()}));
  r = raw_exchange(gw3.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 500) << r.data;
  EXPECT_NE(r.data.find("fixture failure"), std::string::npos);
}

TEST(gateway_fixture, mid_stream_death_ends_with_an_error_event_not_done) {
  auto dying = start_fixture(
      {"--mode", "die_mid_stream", "--die-after", "3", "--chunks", "10", "--chunk-delay-ms", "5"});
  running_gateway gw(base_config({dying.url()}));
  auto r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat_stream));
  ASSERT_EQ(status_of(r.data), 200) << r.data;
  EXPECT_TRUE(r.closed);
  std::string sse = body_of(r.data);
  EXPECT_NE(sse.find("tok2 "), std::string::npos) << sse;
  EXPECT_EQ(sse.find("[DONE]"), std::string::npos) << sse;
  auto last = sse.rfind("data: ");
  ASSERT_NE(last, std::string::npos);
  auto frame = boost::json::parse(sse.substr(last + 6));
  EXPECT_EQ(frame.at("error").at("code").as_string(), "backend_disconnected");
  EXPECT_NE(std::string(frame.at("error").at("message").as_string()).find("failed mid-stream"),
            std::string::npos);
  // The chunked body is properly terminated (clean end, not a cut connection).
  EXPECT_EQ(r.data.substr(r.data.size() - 5), "0\r\n\r\n");
}

TEST(gateway_fixture, bad_input_gets_clear_errors_while_others_are_served) {
  auto a = start_fixture();
  auto c = base_config({a.url()});
  c.limits.max_body_bytes = 1000;
  c.limits.max_header_bytes = 2048;
  c.limits.header_timeout_ms = 400;
  c.api_keys.push_back({"alice", "sk-alice-0123456789", {"fast"}, 0});
  c.api_keys.push_back({"limited", "sk-limited-0123456789", {}, 2});
  running_gateway gw(c);
  const std::string auth = "Authorization: Bearer sk-alice-0123456789";
  auto r = raw_exchange(gw.port(), "GARBAGE\r\n\r\n");
  EXPECT_EQ(status_of(r.data), 400) << r.data;
  EXPECT_NE(r.data.find("Malformed HTTP request"), std::string::npos);
  r = raw_exchange(gw.port(),
                   post("/v1/chat/completions", "{\"model\": \"fast\",\n \"messages\": [", {auth}));
  EXPECT_EQ(status_of(r.data), 400);
  EXPECT_NE(r.data.find("malformed JSON at line 2"), std::string::npos) << r.data;
  r = raw_exchange(gw.port(), post("/v1/chat/completions", R"({"model":"nope","messages":[]})", {auth}));
  EXPECT_EQ(status_of(r.data), 404);
  auto err = boost::json::parse(body_of(r.data));
  EXPECT_EQ(err.at("error").at("code").as_string(), "model_not_found");
  EXPECT_NE(std::string(err.at("error").at("message").as_string()).find("Available: tiny (aliases: fast)"),
            std::string::npos);
  r = raw_exchange(gw.port(), post("/v1/chat/completions", std::string(2000, ' '), {auth}));
  EXPECT_EQ(status_of(r.data), 413) << r.data;
  r = raw_exchange(gw.port(),
                   post("/v1/chat/completions", k_chat, {auth, "X-Big: " + std::string(4000, 'x')}));
  EXPECT_EQ(status_of(r.data), 431) << r.data;
  r = raw_exchange(gw.port(),
                   post("/v1/chat/completions", k_chat, {"Authorization: Bearer sk-wrong-0123456789"}));
  EXPECT_EQ(status_of(r.data), 401);
  EXPECT_NE(r.data.find("authentication_error"), std::string::npos);
  r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 401);
  r = raw_exchange(gw.port(), post("/v1/chat/completions",
                                   R"({"model":"tiny","messages":[{"role":"user","content":"x"}]})", {auth}));
  EXPECT_EQ(status_of(r.data), 403) << r.data;  // alice may use "fast" only
  for (int i = 0; i < 2; ++i) {
    r = raw_exchange(gw.port(),
                     post("/v1/chat/completions", k_chat, {"Authorization: Bearer sk-limited-0123456789"}));
    EXPECT_EQ(status_of(r.data), 200);
  }
  r = raw_exchange(gw.port(),
                   post("/v1/chat/completions", k_chat, {"Authorization: Bearer sk-limited-0123456789"}));
  EXPECT_EQ(status_of(r.data), 429);
  EXPECT_NE(r.data.find("Retry-After: "), std::string::npos);
  r = raw_exchange(gw.port(), "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(r.data), 404);
  r = raw_exchange(gw.port(), "GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(r.data), 405);

  // A slowloris client: one header byte at a time, slower than the header timeout allows. It is cut
  // off while a normal client is served.
  int slow = connect_loopback(gw.port());
  ASSERT_GE(slow, 0);
  std::atomic<bool> slow_closed{false};
  auto started = std::chrono::steady_clock::now();
  std::thread slow_thread([&] {
    std::string req = post("/v1/chat/completions", k_chat, {auth});
    for (char ch : req) {
      if (!send_all(slow, std::string(1, ch))) break;
      pollfd p{slow, POLLIN, 0};
      if (::poll(&p, 1, 150) > 0) {  // the gateway closed it (readable EOF) — stop
        char b;
        if (::recv(slow, &b, 1, MSG_PEEK) <= 0) break;
      }
    }
    auto rr = read_until_close(slow, 5s);
    slow_closed = rr.closed && status_of(rr.data) != 200;
  });
  r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat, {auth}));
  EXPECT_EQ(status_of(r.data), 200);
  slow_thread.join();
  ::close(slow);
  EXPECT_TRUE(slow_closed);
  // Sent in full, the slow request would take ~30 s (200 bytes at 150 ms); the cut comes far sooner.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);
}

TEST(gateway_fixture, queue_is_bounded_with_timeout_and_retry_after) {
  auto slow = start_fixture({"--chunks", "40", "--chunk-delay-ms", "20"});  // ~0.8 s per stream
  auto c = base_config({slow.url()}, 1);
  c.queue.max = 1;
  c.queue.timeout_ms = 200;
  running_gateway gw(c);
  std::vector<std::thread> ts;
  std::vector<int> codes(3);
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&, i] {
      codes[static_cast<std::size_t>(i)] =
          status_of(raw_exchange(gw.port(), post("/v1/chat/completions", k_chat_stream)).data);
    });
    // Order the arrivals: wait until the previous one holds the slot / sits in the queue.
    test::wait_until(
        [&] {
          auto s = gw.srv.stats();
          return i == 0 ? s.replicas[0].outstanding == 1 : true;
        },
        5s, std::chrono::milliseconds(2));
  }
  for (auto& t : ts) t.join();
  std::sort(codes.begin(), codes.end());
  // One is served; of the other two, one is refused at once (queue full) or both wait and time out.
  EXPECT_EQ(codes[0], 200);
  EXPECT_EQ(codes[1], 429);
  EXPECT_EQ(codes[2], 429);
  auto r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 200);
  // No healthy replica: 503 with Retry-After.
  ASSERT_TRUE(gw.srv.set_replica_ready("r0", false).ok());
  EXPECT_FALSE(gw.srv.set_replica_ready("nope", false).ok());
  r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 503);
  EXPECT_NE(r.data.find("Retry-After: 1"), std::string::npos);
  ASSERT_TRUE(gw.srv.set_replica_ready("r0", true).ok());
  r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 200);
}

TEST(gateway_fixture, client_disconnects_free_slots_and_leak_no_fds) {
  auto a = start_fixture({"--chunks", "200", "--chunk-delay-ms", "5"});
  auto b = start_fixture({"--chunks", "200", "--chunk-delay-ms", "5"});
  running_gateway gw(base_config({a.url(), b.url()}, 64));
  // Warm up (keep-alive pools, threads), then measure the fd baseline.
  for (int i = 0; i < 4; ++i) raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
  int baseline = count_fds();
  for (int round = 0; round < 4; ++round) {
    std::vector<int> fds;
    for (int i = 0; i < 50; ++i) {
      int fd = connect_loopback(gw.port());
      ASSERT_GE(fd, 0);
      send_all(fd, post("/v1/chat/completions", k_chat_stream));
      fds.push_back(fd);
    }
    for (int fd : fds) {  // read the first event, then hang up mid-stream
      std::string got;
      char buf[4096];
      while (got.find("tok0") == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
      EXPECT_NE(got.find("tok0"), std::string::npos);
      ::close(fd);
    }
  }
  // The gateway notices at once and closes the upstream streams: nothing outstanding, fds back.
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto s = gw.srv.stats();
        int out = 0;
        for (auto& r : s.replicas) out += r.outstanding;
        return out == 0 && s.open_connections == 0;
      },
      5s));
  ASSERT_TRUE(test::wait_until([&] { return count_fds() <= baseline + 4; }, 5s))
      << count_fds() << " vs " << baseline;
  auto m = test::http_request(gw.port(), "GET", "/metrics").body;
  EXPECT_NE(m.find("code=\"499\"} "), std::string::npos);
}

TEST(gateway_fixture, usage_survives_restart_and_metrics_pass_promtool) {
  auto a = start_fixture();
  std::string dir = test::temp_dir("gateway-usage");
  auto c = base_config({a.url()});
  c.usage_db = dir + "/usage.db";
  c.api_keys.push_back({"alice", "sk-alice-0123456789", {}, 0});
  // The farm's memory series (measured vs predicted per backend and device) go through promtool too.
  c.memory_rows = [] {
    return std::vector<gateway::memory_row>{
        {"tiny-r0", "tiny", "local", "host", gateway::memory_buffers{50, 10, 5},
         gateway::memory_buffers{60, 10, 7}},
        {"tiny-r1", "tiny", "local", "RPC0[127.0.0.1:50052]", gateway::memory_buffers{1, 2, 3},
         std::nullopt}};
  };
  const std::string auth = "Authorization: Bearer sk-alice-0123456789";
  {
    running_gateway gw(c);
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(status_of(raw_exchange(gw.port(), post("/v1/chat/completions", k_chat, {auth})).data), 200);
    ASSERT_EQ(status_of(raw_exchange(gw.port(), post("/v1/chat/completions", k_chat_stream, {auth})).data),
              200);
    raw_exchange(gw.port(), "GARBAGE\r\n\r\n");
    auto m = test::http_request(gw.port(), "GET", "/metrics");
    ASSERT_EQ(m.status, 200);
    std::string path = dir + "/metrics.txt";
    std::ofstream(path) << m.body;
    auto r = test::run({"/bin/sh", "-c", "promtool check metrics < " + path}, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_code, 0) << r.output << "\n" << m.body;
    EXPECT_NE(m.body.find("agifarm_backend_memory_diff_bytes{backend=\"tiny-r0\",model=\"tiny\",node="
                          "\"local\",device=\"host\"} 12\n"),
              std::string::npos)
        << m.body;
    EXPECT_NE(m.body.find("agifarm_backend_memory_predicted_bytes{backend=\"tiny-r1\""), std::string::npos)
        << m.body;
    gw.srv.stop();
  }
  running_gateway again(c);
  auto u = test::http_request(again.port(), "GET", "/v1/usage", {},
                              {{"Authorization", "Bearer sk-alice-0123456789"}});
  ASSERT_EQ(u.status, 200) << u.body;
  auto v = boost::json::parse(u.body);
  auto& row = v.at("data").as_array().at(0);
  EXPECT_EQ(row.at("key").as_string(), "alice");
  EXPECT_EQ(row.at("requests").as_int64(), 4);
  EXPECT_EQ(row.at("prompt_tokens").as_int64(), 4 * 9);
  EXPECT_EQ(row.at("completion_tokens").as_int64(), 3 * 7 + 8);
  EXPECT_EQ(test::http_request(again.port(), "GET", "/v1/usage").status, 401);
}

TEST(gateway_fixture, max_connections_and_loopback_rule) {
  auto a = start_fixture();
  auto c = base_config({a.url()});
  c.limits.max_connections = 2;
  running_gateway gw(c);
  int f1 = connect_loopback(gw.port()), f2 = connect_loopback(gw.port());
  ASSERT_TRUE(test::wait_until([&] { return gw.srv.stats().open_connections == 2; }, 5s));
  auto r = raw_exchange(gw.port(), post("/v1/chat/completions", k_chat));
  EXPECT_EQ(status_of(r.data), 503) << r.data;
  ::close(f1);
  ::close(f2);
  ASSERT_TRUE(test::wait_until([&] { return gw.srv.stats().open_connections == 0; }, 5s));
  EXPECT_EQ(status_of(raw_exchange(gw.port(), post("/v1/chat/completions", k_chat)).data), 200);
  auto open = base_config({a.url()});
  open.listen_host = "0.0.0.0";
  gateway::server s(open);
  auto st = s.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.err().message.find("binds to loopback only"), std::string::npos);
}

// A client that gives up while the backend has not answered yet (a long prefill, a queue wait): the
// watch on the client socket notices the EOF and closes the upstream; nothing stays outstanding.
TEST(gateway_fixture, client_leaving_before_the_first_byte_closes_the_upstream) {
  auto hung = start_fixture({"--mode", "hang"});
  auto c = base_config({hung.url()}, 1);
  c.limits.first_byte_timeout_ms = 60000;
  running_gateway gw(c);
  int fd = connect_loopback(gw.port());
  ASSERT_TRUE(send_all(fd, post("/v1/chat/completions", k_chat)));
  ASSERT_TRUE(test::wait_until([&] { return gw.srv.stats().replicas[0].outstanding == 1; }, 5s));
  ::close(fd);
  ASSERT_TRUE(test::wait_until([&] { return gw.srv.stats().replicas[0].outstanding == 0; }, 5s));
  // The slot is free again: a queued request would now be placed (the hung backend still hangs).
  auto m = test::http_request(gw.port(), "GET", "/metrics").body;
  EXPECT_NE(m.find("replica=\"r0\",code=\"499\"} 1"), std::string::npos) << m;
  EXPECT_TRUE(gw.srv.stats().replicas[0].healthy);  // a client leaving says nothing about the replica
}
