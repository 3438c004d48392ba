// Unit tests of the SSE stream parser and the chunk reader.
#include "bench/sse.hpp"

#include <gtest/gtest.h>

namespace agifarm::bench {
namespace {

std::vector<std::string> feed_split(const std::string& s, std::size_t step) {
  sse_parser p;
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size(); i += step)
    EXPECT_TRUE(p.feed(std::string_view(s).substr(i, step), out));
  p.finish(out);
  return out;
}

TEST(bench_sse, events_are_the_same_whatever_the_split_and_line_ends) {
  std::string lf = "data: {\"a\":1}\n\n: comment\n\nevent: x\ndata: two\ndata: lines\n\ndata: [DONE]\n\n";
  std::string crlf;
  for (char c : lf) {
    if (c == '\n')
      crlf += "\r\n";
    else
      crlf += c;
  }
  std::string cr;
  for (char c : lf) cr += c == '\n' ? '\r' : c;
  const std::vector<std::string> want{"{\"a\":1}", "two\nlines", "[DONE]"};
  for (const auto* s : {&lf, &crlf, &cr})
    for (std::size_t step : {1u, 2u, 3u, 7u, 1000u}) EXPECT_EQ(feed_split(*s, step), want) << "step " << step;
}

TEST(bench_sse, last_event_without_blank_line_is_delivered_at_the_end) {
  EXPECT_EQ(feed_split("data: x", 3), std::vector<std::string>{"x"});
  EXPECT_EQ(feed_split("data:nospace\n", 100), std::vector<std::string>{"nospace"});
  EXPECT_TRUE(feed_split(": only a comment\n\n", 5).empty());
}

TEST(bench_sse, an_endless_line_fails_the_parser_instead_of_growing) {
  sse_parser p(64);
  std::vector<std::string> out;
  EXPECT_FALSE(p.feed(std::string(100, 'x'), out));
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.feed("\n\n", out));
  EXPECT_TRUE(out.empty());
}

TEST(bench_sse, chunk_reads_text_usage_timings_errors_and_done) {
  auto c = parse_chunk(R"({"choices":[{"delta":{"content":"Hel"}}]})");
  EXPECT_TRUE(c.json);
  EXPECT_TRUE(c.has_text);
  EXPECT_EQ(c.text_bytes, 3u);
  EXPECT_FALSE(c.prompt_tokens);
  EXPECT_FALSE(parse_chunk(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})").has_text);
  EXPECT_TRUE(parse_chunk(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})").has_text);
  EXPECT_TRUE(parse_chunk(R"({"choices":[{"text":"x"}]})").has_text);
  auto u = parse_chunk(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}})");
  EXPECT_EQ(u.prompt_tokens, 12u);
  EXPECT_EQ(u.completion_tokens, 5u);
  auto t = parse_chunk(R"({"choices":[{"delta":{}}],"timings":{"prompt_n":4,"cache_n":6,"predicted_n":8}})");
  EXPECT_EQ(t.prompt_tokens, 10u) << "prompt = processed + cached, as the gateway counts";
  EXPECT_EQ(t.completion_tokens, 8u);
  EXPECT_TRUE(parse_chunk("[DONE]").done);
  EXPECT_EQ(parse_chunk(R"({"error":{"message":"context full","code":400}})").error, "context full");
  EXPECT_EQ(parse_chunk(R"({"error":"boom"})").error, "boom");
  auto junk = parse_chunk("{not json");
  EXPECT_FALSE(junk.json);
  EXPECT_FALSE(junk.has_text);
  EXPECT_FALSE(parse_chunk(R"({"usage":{"prompt_tokens":-3,"completion_tokens":"x"}})").prompt_tokens);
}

}  // namespace
}  // namespace agifarm::bench
