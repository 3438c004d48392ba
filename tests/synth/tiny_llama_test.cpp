// Integration: llama-server really loads the synthesized tiny models and answers chat completions.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "support/support.hpp"

namespace agifarm {
namespace {

void expect_chat_answer(const std::string& arch) {
  auto server = test::start_llama_server(test::tiny_model(arch), {"-c", "1024", "-np", "1"});
  auto r = test::http_request(server.port, "POST", "/v1/chat/completions",
                              R"({"messages":[{"role":"user","content":"Hello there"}],"max_tokens":8})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = boost::json::parse(r.body).as_object();
  const auto& choice = j.at("choices").as_array().at(0).as_object();
  EXPECT_EQ(choice.at("message").at("role").as_string(), "assistant");
  EXPECT_FALSE(choice.at("message").at("content").as_string().empty());
  EXPECT_EQ(j.at("usage").at("completion_tokens").as_int64(), 8);
  EXPECT_GT(j.at("usage").at("prompt_tokens").as_int64(), 3);  // the real tokenizer and chat template ran
}

TEST(tiny_llama, qwen3moe_answers_chat_completion) { expect_chat_answer("qwen3moe"); }
TEST(tiny_llama, qwen3_answers_chat_completion) { expect_chat_answer("qwen3"); }
// Laid out by their shape-file families: MXFP4 experts, attention sinks and a sliding window (gpt-oss);
// gated-delta-net recurrent blocks, a gated attention block and a shared expert (qwen35moe).
TEST(tiny_llama, gpt_oss_answers_chat_completion) { expect_chat_answer("gpt-oss"); }
TEST(tiny_llama, qwen35moe_answers_chat_completion) { expect_chat_answer("qwen35moe"); }

TEST(tiny_llama, quantized_weights_load_and_answer) {
  auto server = test::start_llama_server(test::tiny_model("qwen3", {"--type", "Q8_0"}), {"-c", "512"});
  auto r = test::http_request(server.port, "POST", "/completion", R"({"prompt":"abc","n_predict":4})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(boost::json::parse(r.body).at("tokens_predicted").as_int64(), 4);
}

}  // namespace
}  // namespace agifarm
