#include "gateway/request.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "gateway/router.hpp"
#include "request_reference.hpp"

using namespace agifarm::gateway;

TEST(gateway_request, reads_model_stream_and_affinity) {
  auto r = inspect_request(
      R"({"model":"fast","stream":true,"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]})",
      endpoint::chat_completions);
  ASSERT_TRUE(r.ok()) << r.err().message;
  EXPECT_EQ(r->model, "fast");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->has_affinity);
  // A later turn of the same conversation keeps the key; another first question changes it.
  auto later = inspect_request(
      R"({"model":"fast","messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":"more"}]})",
      endpoint::chat_completions);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->affinity_hash, r->affinity_hash);
  EXPECT_FALSE(later->stream);
  auto other = inspect_request(
      R"({"model":"fast","messages":[{"role":"system","content":"S"},{"role":"user","content":"bye"}]})",
      endpoint::chat_completions);
  EXPECT_NE(other->affinity_hash, r->affinity_hash);
  // Content given as parts counts the same as a string.
  auto parts = inspect_request(
      R"({"messages":[{"role":"system","content":[{"type":"text","text":"S"}]},{"role":"user","content":"hi"}]})",
      endpoint::chat_completions);
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->affinity_hash, r->affinity_hash);
  EXPECT_EQ(parts->model, "");
  auto comp = inspect_request(R"({"model":"m","prompt":"once upon"})", endpoint::completions);
  ASSERT_TRUE(comp.ok());
  EXPECT_TRUE(comp->has_affinity);
  auto emb = inspect_request(R"({"model":"m","input":["a","b"]})", endpoint::embeddings);
  ASSERT_TRUE(emb.ok());
  EXPECT_FALSE(emb->has_affinity);
  auto msg = inspect_request(
      R"({"model":"m","system":"S","messages":[{"role":"user","content":"x"}],"max_tokens":5})",
      endpoint::messages);
  ASSERT_TRUE(msg.ok());
}

TEST(gateway_request, malformed_json_says_where) {
  auto r = inspect_request("{\"model\": \"x\",\n  \"messages\": [}", endpoint::chat_completions);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("malformed JSON at line 2, column 16 (byte 30)"), std::string::npos)
      << r.err().message;
  r = inspect_request("{\"model\": \"x\"", endpoint::chat_completions);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("malformed JSON at line 1, column 14"), std::string::npos)
      << r.err().message;
  r = inspect_request("{} x", endpoint::chat_completions);
  EXPECT_NE(r.err().message.find("unexpected data after the JSON value"), std::string::npos)
      << r.err().message;
  EXPECT_EQ(inspect_request("", endpoint::chat_completions).err().message,
            "malformed JSON: the request body is empty");
  EXPECT_EQ(inspect_request("[1]", endpoint::chat_completions).err().message,
            "the request body must be a JSON object");
  EXPECT_EQ(inspect_request(R"({"model":3,"messages":[]})", endpoint::chat_completions).err().message,
            "'model' must be a string");
  EXPECT_EQ(inspect_request(R"({"stream":"yes","messages":[]})", endpoint::chat_completions).err().message,
            "'stream' must be true or false");
  EXPECT_EQ(inspect_request(R"({"model":"m"})", endpoint::chat_completions).err().message,
            "'messages' is required");
  EXPECT_EQ(inspect_request(R"({"messages":[1]})", endpoint::chat_completions).err().message,
            "'messages[0]' must be an object");
  EXPECT_EQ(inspect_request(R"({"model":"m"})", endpoint::completions).err().message, "'prompt' is required");
  std::string deep(100000, '[');
  EXPECT_FALSE(inspect_request(deep, endpoint::chat_completions).ok());
}

// The SAX reader against the DOM reference: the same value or the same error message, on every
// endpoint, for bodies that probe member order, duplicates, types, parts, depth and bounds.
TEST(gateway_request, agrees_with_the_dom_reference) {
  const std::string big(9000, 'x');
  std::vector<std::string> bodies = {
      R"({"model":"fast","stream":true,"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]})",
      R"({"messages":[{"content":"S","role":"system"},{"content":[{"text":"a"},{"type":"image"},{"text":1},"p",{"text":"b","text":"c"}],"role":"user"},{"role":"user","content":"later"}]})",
      R"({"model":"a","model":"b","stream":false,"stream":null,"messages":1,"messages":[{"role":"user","role":2,"content":"x"}]})",
      R"({"model":"a","messages":[{"role":"assistant","content":{"text":"obj"}},[1],{"role":"user"}]})",
      R"({"model":"a","messages":[{"role":"user","content":"x"},5,[]]})",
      R"({"messages":[{"role":"tool","content":null},{"role":"user","content":[[{"text":"deep"}],{"text":"ok"}]}]})",
      R"({"system":[{"text":"sys1"},{"text":"sys2"}],"messages":[{"role":"user","content":"q"}],"system":"final"})",
      R"({"messages":[{"role":"user","content":"q"}],"system":{"text":"no"}})",
      R"({"prompt":["first","second"],"model":"m"})",
      R"({"prompt":[1,"second"]})",
      R"({"prompt":"p","prompt":{"a":1}})",
      R"({"prompt":[]})",
      R"({"input":null})",
      R"({"input":"i","model":["m"]})",
      R"({"model":"m","stream":0})",
      R"({"model":"m","stream":"yes"})",
      R"({"model":"\u00e9\n\"q\"","messages":[{"role":"us\u0065r","content":"\ud83d\ude00"}]})",
      R"({"nested":{"model":5,"messages":3},"model":"ok","messages":[]})",
      "{\"messages\":[{\"role\":\"system\",\"content\":\"" + big + "\"},{\"role\":\"user\",\"content\":\"" +
          big + "\"}]}",
      "{\"system\":\"" + big + "\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"" + big +
          "\"}]}]}",
      "{\"prompt\":\"" + big + "\"}",
      R"([])",
      R"("s")",
      R"(7)",
      R"(null)",
      R"({})",
      R"({"a":[1,2,{"b":[true,false,null]}]})",
      R"({"model":"m",})",
      R"({"model":"m"} {})",
      " \n{\"model\":\"m\"}\n ",
      R"({"model":"m","messages":[)",
      std::string(40, '[') + std::string(40, ']'),
      "{\"messages\":" + std::string(31, '[') + std::string(31, ']') + "}",
  };
  for (const auto& body : bodies) {
    for (int k = 0; k < 4; ++k) {
      auto kind = static_cast<endpoint>(k);
      auto got = inspect_request(body, kind);
      auto want = reference::inspect_request_dom(body, kind);
      ASSERT_EQ(got.ok(), want.ok()) << "endpoint " << k << ": " << body
                                     << "\n got: " << (got.ok() ? "ok" : got.err().message)
                                     << "\n want: " << (want.ok() ? "ok" : want.err().message);
      if (!want.ok()) {
        EXPECT_EQ(got.err().message, want.err().message) << body;
        continue;
      }
      EXPECT_EQ(got->model, want->model) << body;
      EXPECT_EQ(got->stream, want->stream) << body;
      EXPECT_EQ(got->has_affinity, want->has_affinity) << body;
      EXPECT_EQ(got->affinity_hash, want->affinity_hash) << "endpoint " << k << ": " << body.substr(0, 200);
    }
  }
}

TEST(gateway_request, error_body_is_openai_shaped) {
  auto v = boost::json::parse(openai_error_body("bad \"thing\"", "invalid_request_error", "x"));
  EXPECT_EQ(v.at("error").at("message").as_string(), "bad \"thing\"");
  EXPECT_EQ(v.at("error").at("type").as_string(), "invalid_request_error");
  EXPECT_EQ(v.at("error").at("code").as_string(), "x");
  EXPECT_TRUE(v.at("error").at("param").is_null());
}

TEST(gateway_router, routes_names_and_aliases_and_lists_them) {
  config c;
  c.pools.push_back(
      {"qwen3-8b", {"fast", "code"}, balance::least_outstanding, 1, 0, {{"r0", "http://127.0.0.1:1"}}});
  c.pools.push_back(
      {"qwen3-32b", {"think"}, balance::least_outstanding, 1, 0, {{"r1", "http://127.0.0.1:2"}}});
  router r(c);
  EXPECT_EQ(r.find("qwen3-8b"), 0u);
  EXPECT_EQ(r.find("code"), 0u);
  EXPECT_EQ(r.find("think"), 1u);
  EXPECT_FALSE(r.find("nope"));
  EXPECT_FALSE(r.find(""));  // two pools: a model is required
  EXPECT_EQ(r.unknown_model_message("nope"),
            "The model 'nope' does not exist. Available: qwen3-8b (aliases: fast, code), qwen3-32b (aliases: "
            "think)");
  auto v = boost::json::parse(r.models_json());
  EXPECT_EQ(v.at("object").as_string(), "list");
  auto& data = v.at("data").as_array();
  ASSERT_EQ(data.size(), 5u);
  EXPECT_EQ(data[0].at("id").as_string(), "qwen3-8b");
  EXPECT_EQ(data[0].at("object").as_string(), "model");
  EXPECT_EQ(data[4].at("id").as_string(), "think");
  EXPECT_EQ(data[4].at("root").as_string(), "qwen3-32b");
  c.pools.pop_back();
  router one(c);
  EXPECT_EQ(one.find(""), 0u);
}
