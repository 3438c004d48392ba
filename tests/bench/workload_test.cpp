// Unit tests of workload generation: deterministic per seed, growing chat histories, shared agent
// prefixes, long documents, the mix, targets from /v1/models, and bad names.
#include "bench/workload.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>

#include "bench/driver.hpp"

namespace agifarm::bench {
namespace {
namespace json = boost::json;

json::object body(const request_spec& r) { return json::parse(r.body).as_object(); }
const json::array& messages(const json::object& b) { return b.at("messages").as_array(); }

workload_targets targets() { return {{"fast"}, {"code"}, {"think"}}; }

TEST(bench_workload, names_parse_and_a_bad_one_names_the_choices) {
  EXPECT_EQ(*parse_workload("chat"), workload_kind::chat);
  EXPECT_EQ(*parse_workload("agents"), workload_kind::agents);
  EXPECT_EQ(*parse_workload("long"), workload_kind::long_context);
  EXPECT_EQ(*parse_workload("mix"), workload_kind::mix);
  auto bad = parse_workload("chatty");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().message.find("'chatty'"), std::string::npos);
  EXPECT_NE(bad.err().message.find("chat, agents, long or mix"), std::string::npos);
  EXPECT_EQ(bad.err().exit_code, 2);
}

TEST(bench_workload, chat_history_grows_with_the_replies_and_restarts_after_max_turns) {
  workload_options o;
  o.kind = workload_kind::chat;
  o.chat_max_turns = 3;
  workload w(o, targets());
  std::size_t prev = 0;
  for (int turn = 1; turn <= 3; ++turn) {
    auto r = w.next(0);
    auto b = body(r);
    EXPECT_EQ(b.at("model").as_string(), "fast");
    EXPECT_TRUE(b.at("stream").as_bool());
    EXPECT_EQ(b.at("max_tokens").as_int64(), o.chat_max_tokens);
    // system + (user, assistant) per earlier turn + this user message
    EXPECT_EQ(messages(b).size(), static_cast<std::size_t>(2 * turn)) << "turn " << turn;
    EXPECT_GT(r.body.size(), prev);
    prev = r.body.size();
    w.reply(0, true, "reply number " + std::to_string(turn));
  }
  auto b3 = body(w.next(0));
  EXPECT_EQ(messages(b3).size(), 2u) << "a new conversation after max_turns";
  // a failed turn restarts the conversation
  w.reply(0, true, "x");
  auto b4 = body(w.next(0));
  EXPECT_EQ(messages(b4).size(), 4u);
  EXPECT_EQ(messages(b4)[2].as_object().at("content").as_string(), "x");
  w.reply(0, false, "");
  EXPECT_EQ(messages(body(w.next(0))).size(), 2u);
  // workers have their own conversations
  EXPECT_EQ(messages(body(w.next(1))).size(), 2u);
}

TEST(bench_workload, agents_share_one_long_prefix_and_differ_after_it) {
  workload_options o;
  o.kind = workload_kind::agents;
  o.agent_prefix_words = 300;
  o.agents = 4;
  workload w(o, targets());
  std::set<std::string> systems, users;
  for (int i = 0; i < 8; ++i) {
    auto b = body(w.next(i % 3));
    EXPECT_EQ(b.at("model").as_string(), "code");
    std::string sys(messages(b)[0].as_object().at("content").as_string());
    EXPECT_EQ(sys.rfind(w.agent_prefix(), 0), 0u)
        << "every agent's system prompt starts with the shared prefix";
    systems.insert(sys);
    users.insert(std::string(messages(b)[1].as_object().at("content").as_string()));
  }
  EXPECT_EQ(systems.size(), 4u) << "one persona per agent after the prefix";
  EXPECT_EQ(users.size(), 8u);
  std::size_t words = 1;
  for (char c : w.agent_prefix()) words += c == ' ' || c == '\n';
  EXPECT_GE(words, 300u);
}

TEST(bench_workload, long_requests_are_long_and_never_repeat) {
  workload_options o;
  o.kind = workload_kind::long_context;
  o.long_words = 1000;
  workload w(o, targets());
  auto a = w.next(0), b = w.next(0);
  EXPECT_EQ(a.kind, "long");
  EXPECT_EQ(body(a).at("model").as_string(), "think");
  EXPECT_GE(a.prompt_words, 1000u);
  EXPECT_NE(a.body, b.body);
}

TEST(bench_workload, same_seed_same_requests_and_the_mix_has_every_part) {
  workload_options o;
  o.kind = workload_kind::mix;
  o.seed = 42;
  workload w1(o, targets()), w2(o, targets());
  std::map<std::string, int> kinds;
  for (int i = 0; i < 200; ++i) {
    auto a = w1.next(i % 4), b = w2.next(i % 4);
    ASSERT_EQ(a.body, b.body) << i;
    ++kinds[a.kind];
    w1.reply(i % 4, true, "ok");
    w2.reply(i % 4, true, "ok");
  }
  EXPECT_GT(kinds["chat"], 70);
  EXPECT_GT(kinds["agents"], 35);
  EXPECT_GT(kinds["long"], 20);
  o.seed = 43;
  workload w3(o, targets());
  workload w4(workload_options{.kind = workload_kind::mix, .seed = 42}, targets());
  EXPECT_NE(w3.next(0).body, w4.next(0).body);
}

TEST(bench_workload, targets_follow_role_aliases_else_every_pool_in_turn) {
  auto m = parse_models(R"({"object":"list","data":[{"id":"tiny","root":"tiny"},{"id":"big","root":"big"},
                          {"id":"fast","root":"tiny"},{"id":"think","root":"big"}]})");
  ASSERT_TRUE(m) << m.err().message;
  EXPECT_EQ(m->pool_of.at("fast"), "tiny");
  EXPECT_EQ(m->pools, (std::vector<std::string>{"tiny", "big"}));
  auto t = choose_targets(*m, {});
  ASSERT_TRUE(t);
  EXPECT_EQ(t->chat, std::vector<std::string>{"fast"});
  EXPECT_EQ(t->long_context, std::vector<std::string>{"think"});
  EXPECT_EQ(t->agents, (std::vector<std::string>{"tiny", "big"})) << "no `code` alias: every pool";
  workload w(workload_options{.kind = workload_kind::agents}, *t);
  EXPECT_EQ(body(w.next(0)).at("model").as_string(), "tiny");
  EXPECT_EQ(body(w.next(0)).at("model").as_string(), "big");
  auto given = choose_targets(*m, {"big"});
  ASSERT_TRUE(given);
  EXPECT_EQ(given->chat, std::vector<std::string>{"big"});
  auto unknown = choose_targets(*m, {"nope"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.err().message.find("'nope'"), std::string::npos);
  EXPECT_FALSE(parse_models("[]"));
  EXPECT_FALSE(parse_models(R"({"data":[]})"));
  EXPECT_FALSE(parse_models(R"({"data":[{"name":"x"}]})"));
}

TEST(bench_workload, urls_parse_and_bad_ones_say_why) {
  auto a = parse_url("http://127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  EXPECT_EQ(parse_url("http://localhost:9/v1/")->port, 9);
  EXPECT_EQ(parse_url("http://[::1]:81")->host, "::1");
  EXPECT_EQ(parse_url("http://example")->port, 80);
  for (const char* bad :
       {"https://x:1", "127.0.0.1:8080", "http://:80", "http://h:0", "http://h:99999", "http://h:8/x"}) {
    auto r = parse_url(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.err().message.find(bad), std::string::npos) << r.err().message;
    }
  }
}

}  // namespace
}  // namespace agifarm::bench
