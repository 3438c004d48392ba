#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "gateway/keys.hpp"
#include "gateway/metrics.hpp"
#include "gateway/usage.hpp"

using namespace agifarm::gateway;
using namespace std::chrono_literals;

TEST(gateway_keys, constant_time_compare_and_bearer_parsing) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_TRUE(constant_time_equal("", ""));
  key_store ks({{"alice", "sk-alice-1234", {"fast"}, 0}, {"bob", "sk-bob-12345", {}, 2}});
  EXPECT_TRUE(ks.enabled());
  EXPECT_EQ(ks.authenticate("Bearer sk-alice-1234", ""), 0u);
  EXPECT_EQ(ks.authenticate("bearer  sk-bob-12345 ", ""), 1u);
  EXPECT_EQ(ks.authenticate("", "sk-bob-12345"), 1u);  // Anthropic-style x-api-key
  EXPECT_FALSE(ks.authenticate("Bearer sk-alice-123", ""));
  EXPECT_FALSE(ks.authenticate("Bearer ", ""));
  EXPECT_FALSE(ks.authenticate("Basic sk-alice-1234", ""));
  EXPECT_FALSE(ks.authenticate("", ""));
  EXPECT_TRUE(ks.allows(0, "fast", "qwen3-8b"));
  EXPECT_FALSE(ks.allows(0, "think", "qwen3-32b"));
  EXPECT_TRUE(ks.allows(1, "anything", "pool"));
  EXPECT_FALSE(key_store({}).enabled());
}

TEST(gateway_keys, rate_is_a_token_bucket_on_the_given_clock) {
  key_store ks({{"k", "0123456789", {}, 2}, {"free", "abcdefghij", {}, 0}});
  time_point t{std::chrono::seconds(50)};
  EXPECT_EQ(ks.take(0, t), 0);
  EXPECT_EQ(ks.take(0, t), 0);
  int wait = ks.take(0, t);
  EXPECT_EQ(wait, 30);  // 2 per minute: the next token in 30 s
  t += 29s;
  EXPECT_GT(ks.take(0, t), 0);
  t += 1s;
  EXPECT_EQ(ks.take(0, t), 0);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(ks.take(1, t), 0);
}

TEST(gateway_metrics, renders_prometheus_text) {
  metrics m({"qwen3-8b", "we\"ird"}, {"r0", "r1"});
  m.request_done(0, 1, 200, 0.003, 0.002);
  m.request_done(0, 1, 200, 2.0, 0.5);
  m.request_done(k_no_index, k_no_index, 401, 0);
  m.tokens(0, 10, 5);
  m.retry(0);
  std::vector<scheduler::replica_state> rs{{"r0", true, true, 0, 2, 1}, {"r1", true, false, 3, 0, 0}};
  std::vector<scheduler::pool_state> ps{{"qwen3-8b", 2}, {"we\"ird", 0}};
  std::string t = m.render(rs, ps, 7);
  EXPECT_NE(t.find("agifarm_gateway_requests_total{pool=\"qwen3-8b\",replica=\"r1\",code=\"200\"} 2\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("agifarm_gateway_requests_total{pool=\"none\",replica=\"none\",code=\"401\"} 1\n"),
            std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_request_duration_seconds_bucket{pool=\"qwen3-8b\",le=\"0.005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_request_duration_seconds_bucket{pool=\"qwen3-8b\",le=\"2.5\"} 2\n"),
            std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_request_duration_seconds_bucket{pool=\"qwen3-8b\",le=\"+Inf\"} 2\n"),
            std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_request_duration_seconds_count{pool=\"qwen3-8b\"} 2\n"),
            std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_prompt_tokens_total{pool=\"qwen3-8b\"} 10\n"), std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_completion_tokens_total{pool=\"qwen3-8b\"} 5\n"), std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_queue_depth{pool=\"qwen3-8b\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_queue_depth{pool=\"we\\\"ird\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_replica_healthy{replica=\"r0\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_replica_outstanding{replica=\"r1\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("agifarm_gateway_open_connections 7\n"), std::string::npos);
  EXPECT_EQ(t.back(), '\n');
}

TEST(gateway_metrics, renders_measured_and_predicted_memory_per_backend_and_device) {
  EXPECT_EQ(render_memory({}), "");  // no backends: no HELP / TYPE lines either
  std::vector<memory_row> rows{
      {"tiny-r0", "tiny", "local", "host", memory_buffers{50, 10, 5}, memory_buffers{60, 10, 7}},
      {"big-r0", "b\"ig", "gpu1", "CUDA0", memory_buffers{1000, 0, 0}, std::nullopt},  // not loaded yet
      {"big-r0", "b\"ig", "gpu1", "RPC0[10.0.0.2:50052]", std::nullopt,
       memory_buffers{1, 2, 3}},  // not predicted
  };
  std::string t = render_memory(rows);
  const std::string l = "backend=\"tiny-r0\",model=\"tiny\",node=\"local\",device=\"host\"";
  EXPECT_NE(t.find("# TYPE agifarm_backend_memory_predicted_bytes gauge\n"), std::string::npos) << t;
  EXPECT_NE(t.find("agifarm_backend_memory_predicted_bytes{" + l + ",buffer=\"model\"} 50\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("agifarm_backend_memory_measured_bytes{" + l + ",buffer=\"compute\"} 7\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("agifarm_backend_memory_diff_bytes{" + l + "} 12\n"), std::string::npos) << t;
  // The model name is escaped; a row with one side only has that side and no difference.
  EXPECT_NE(
      t.find("agifarm_backend_memory_predicted_bytes{backend=\"big-r0\",model=\"b\\\"ig\",node=\"gpu1\","
             "device=\"CUDA0\",buffer=\"model\"} 1000\n"),
      std::string::npos)
      << t;
  EXPECT_EQ(t.find("agifarm_backend_memory_measured_bytes{backend=\"big-r0\",model=\"b\\\"ig\",node=\"gpu1\","
                   "device=\"CUDA0\""),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("device=\"RPC0[10.0.0.2:50052]\",buffer=\"kv\"} 2\n"), std::string::npos) << t;
  EXPECT_EQ(t.find("agifarm_backend_memory_diff_bytes{backend=\"big-r0\""), std::string::npos) << t;
  // A smaller measurement gives a negative difference.
  std::string n =
      render_memory({{"a", "m", "local", "host", memory_buffers{100, 0, 0}, memory_buffers{40, 0, 0}}});
  EXPECT_NE(n.find("agifarm_backend_memory_diff_bytes{backend=\"a\",model=\"m\",node=\"local\",device="
                   "\"host\"} -60\n"),
            std::string::npos)
      << n;
  EXPECT_EQ(n.find("# TYPE agifarm_backend_memory_diff_bytes gauge"),
            n.rfind("# TYPE agifarm_backend_memory_diff_bytes gauge"));
}

TEST(gateway_usage, scanner_finds_usage_in_sse_split_anywhere) {
  std::string sse =
      "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34}}\n\n"
      "data: [DONE]\n\n";
  std::mt19937 rng(3);
  for (int iter = 0; iter < 200; ++iter) {
    usage_scanner s(true);
    std::size_t i = 0;
    while (i < sse.size()) {
      std::size_t n = 1 + rng() % 20;
      s.feed(std::string_view(sse).substr(i, n));
      i += n;
    }
    auto u = s.finish();
    ASSERT_TRUE(u);
    EXPECT_EQ(u->prompt, 12u);
    EXPECT_EQ(u->completion, 34u);
    EXPECT_TRUE(s.saw_done());
  }
  usage_scanner j(false);
  j.feed("{\"id\":1,\"usage\":{\"prompt_tokens\":");
  j.feed("5,\"completion_tokens\":6}}");
  auto u = j.finish();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt, 5u);
  EXPECT_EQ(u->completion, 6u);
  usage_scanner a(true);  // Anthropic: input in message_start, output in message_delta
  a.feed(
      "event: message_start\ndata: "
      "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n");
  a.feed("event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n");
  u = a.finish();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt, 7u);
  EXPECT_EQ(u->completion, 9u);
  usage_scanner none(false);
  none.feed("not json");
  EXPECT_FALSE(none.finish());
}

TEST(gateway_usage, json_body_usage_is_read_from_its_member_alone) {
  // The word "usage" and braces inside strings do not confuse it; the usage object comes last.
  std::string body =
      R"({"id":"x","choices":[{"message":{"content":"my \"usage\": {not json} of {braces}"}}],)"
      R"("usage" : {"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1}}})";
  usage_scanner j(false);
  j.feed(body);
  auto u = j.finish();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt, 3u);
  EXPECT_EQ(u->completion, 4u);
  // A usage object that never closes: nothing, no crash.
  usage_scanner cut(false);
  cut.feed(R"({"usage":{"prompt_tokens":3,)");
  EXPECT_FALSE(cut.finish());
  // Only the usage member is read: the rest of the body need not even be JSON.
  usage_scanner tail_only(false);
  tail_only.feed(R"(<not json> "usage": {"prompt_tokens":5,"completion_tokens":6,"details":{"x":[1]}}})");
  auto tu = tail_only.finish();
  ASSERT_TRUE(tu);
  EXPECT_EQ(tu->prompt, 5u);
  EXPECT_EQ(tu->completion, 6u);
  // "usage" only as a string value: nothing.
  usage_scanner str(false);
  str.feed(R"({"content":"usage","n":1})");
  EXPECT_FALSE(str.finish());
}

TEST(gateway_usage, json_body_scan_agrees_with_a_full_parse) {
  // The scanner reads only the usage member (found from the end, parsed without a DOM); a full parse
  // of the body must give the same counts for every shape of usage object.
  const char* usages[] = {
      R"({"prompt_tokens":9,"completion_tokens":7,"total_tokens":16})",
      R"({"input_tokens":5,"output_tokens":6})",
      R"({"prompt_tokens":2,"input_tokens":5,"output_tokens":6,"completion_tokens":1})",
      R"({"prompt_tokens":-3,"completion_tokens":18446744073709551615})",
      R"({"prompt_tokens":1.5,"input_tokens":4,"completion_tokens":"7","output_tokens":[8]})",
      R"({"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":3,"completion_tokens":null})",
      R"({"details":{"prompt_tokens":99,"completion_tokens":98},"list":[{"prompt_tokens":97}],"completion_tokens":5})",
      R"({"total_tokens":16})",
      R"({})",
      R"( { "prompt_tokens" : 4 , "completion_tokens" : 2 } )",
  };
  for (const char* usage : usages) {
    std::string body =
        std::string(R"({"id":"x","usage":{"prompt_tokens":1000},"choices":[],"usage":)") + usage + "}";
    usage_scanner scan(false);
    scan.feed(body);
    auto got = scan.finish();
    auto want = usage_from_json(body);
    ASSERT_EQ(got.has_value(), want.has_value()) << body;
    if (want) {
      EXPECT_EQ(got->prompt, want->prompt) << body;
      EXPECT_EQ(got->completion, want->completion) << body;
    }
  }
}

TEST(gateway_usage, llama_server_stream_without_usage_is_counted_from_its_timings) {
  // The last chunk of a llama-server stream when the client did not set stream_options.include_usage.
  usage_scanner s(true);
  s.feed("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
  s.feed(
      "data: {\"choices\":[{\"finish_reason\":\"length\",\"delta\":{}}],\"timings\":{\"cache_n\":20,"
      "\"prompt_n\":5,\"prompt_ms\":1.5,\"predicted_n\":8,\"predicted_ms\":9.1}}\n\ndata: [DONE]\n\n");
  auto u = s.finish();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt, 25u);  // processed + cached
  EXPECT_EQ(u->completion, 8u);
  // With include_usage the usage object wins over the timings in the same chunk.
  usage_scanner both(true);
  both.feed(
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":9},"
      "\"timings\":{\"cache_n\":0,\"prompt_n\":1,\"predicted_n\":1}}\n\n");
  u = both.finish();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->prompt, 30u);
  EXPECT_EQ(u->completion, 9u);
}

TEST(gateway_usage, store_persists_across_reopen) {
  auto path =
      std::filesystem::temp_directory_path() / ("agifarm-usage-" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(path);
  {
    usage_store s;
    ASSERT_TRUE(s.open(path.string()).ok());
    s.add("alice", 1, {10, 20});
    s.add("alice", 1, {1, 2});
    s.add("bob", 1, {});
    ASSERT_TRUE(s.flush().ok());
    s.add("bob", 2, {3, 4});  // flushed by the destructor
  }
  {
    usage_store s;
    ASSERT_TRUE(s.open(path.string()).ok());
    auto a = s.row("alice");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->requests, 2u);
    EXPECT_EQ(a->prompt_tokens, 11u);
    EXPECT_EQ(a->completion_tokens, 22u);
    auto b = s.row("bob");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->requests, 3u);
    EXPECT_EQ(b->completion_tokens, 4u);
    EXPECT_EQ(s.rows().size(), 2u);
  }
  std::filesystem::remove(path);
  usage_store bad;
  auto st = bad.open("/nonexistent-dir/x/usage.db");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.err().message.find("usage_db /nonexistent-dir/x/usage.db: cannot open"), std::string::npos);
}
