#include "plan/plan_document.hpp"

#include <gtest/gtest.h>

#include "common/ot_rules.hpp"
#include "plan/deployment.hpp"

namespace agifarm::plan {
namespace {

plan_document sample() {
  plan_document d;
  d.inventory.nodes.push_back(
      {"box", "10.0.0.2", {{0, "rtx3090", "nvidia", 24ull << 30, 936e9, 71}}, 16, 128ull << 30, 50e9});
  d.inventory.links.push_back({"pcie", "box", "box", {0}, 31.5e9, 5e-6});
  d.models.push_back({"qwen3-8b", "/m/q.gguf", "qwen3", "https://huggingface.co/Qwen/Qwen3-8B",
                      8'190'000'000ull, 5'000'000'000ull, 36, 0, "Q4_K", true});
  d.roles.push_back({"fast", "qwen3-8b", 8192, 4});
  doc_candidate c;
  c.model = "qwen3-8b";
  c.role = "fast";
  c.strategy = "replica";
  c.feasible = true;
  c.devices.push_back({"box/gpu0", 5'000'000'000ull, 1'000'000ull, 300'000'000ull, 6'301'000'000ull});
  c.device_capacity_bytes.push_back(24ull << 30);
  c.decode_tps = 101.5;
  c.max_ctx = 40960;
  c.agents = 4;
  c.pros = {"fast"};
  c.cons = {"small context"};
  d.candidates.push_back(c);
  d.recommendation = {"replica", 0, {"fits with room"}};
  backend_spec b;
  b.name = "qwen3-8b-r0";
  b.model = "qwen3-8b";
  b.args = {"-m", "/m/q.gguf", "-c", "32768"};
  d.chosen.strategy = "replica";
  d.chosen.backends.push_back(b);
  d.warnings.push_back("w");
  return d;
}

TEST(plan_document, round_trips_exactly) {
  auto d = sample();
  auto j = to_json(d);
  auto back = plan_document_from_json(j);
  ASSERT_TRUE(back.ok()) << back.err().message;
  EXPECT_EQ(boost::json::serialize(to_json(*back)), boost::json::serialize(j));
  EXPECT_EQ(back->models[0].hf_repo, "https://huggingface.co/Qwen/Qwen3-8B");
  EXPECT_EQ(back->candidates[0].devices[0].model_bytes, 5'000'000'000ull);
  EXPECT_EQ(back->chosen.backends[0].args[3], "32768");
}

TEST(plan_document, errors_name_the_json_path) {
  auto j = to_json(sample());
  j["candidates"].as_array()[0].as_object()["devices"].as_array()[0].as_object()["model_bytes"] = "lots";
  auto r = plan_document_from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("candidates[0].devices[0].model_bytes"), std::string::npos)
      << r.err().message;
  EXPECT_EQ(r.err().exit_code, 2);
}

TEST(plan_document, rejects_wrong_version_and_bad_links) {
  auto j = to_json(sample());
  j["version"] = 7;
  auto r = plan_document_from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("version"), std::string::npos);
  j = to_json(sample());
  j["inventory"].as_object()["links"].as_array()[0].as_object()["kind"] = "carrier-pigeon";
  r = plan_document_from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("inventory.links[0].kind"), std::string::npos) << r.err().message;
}

TEST(plan_document, bad_deployment_is_reported_with_its_path) {
  auto j = to_json(sample());
  j["deployment"].as_object()["backends"].as_array()[0].as_object()["port"] = 70000;
  auto r = plan_document_from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("deployment.backends[0].port"), std::string::npos) << r.err().message;
}

TEST(plan_document, a_number_too_big_for_a_double_is_an_error_not_infinity) {
  // 1e400 parses as infinity, which would serialize as the non-JSON "Infinity" (found by the fuzzer).
  auto doc = sample();
  doc.chosen.backends[0].predicted = backend_prediction{};
  doc.chosen.backends[0].predicted->decode_tps = 12.5;
  auto text = boost::json::serialize(to_json(doc));
  auto at = text.find("\"predicted\":{");
  ASSERT_NE(at, std::string::npos) << "the sample has no predicted figures";
  auto field = text.find("\"decode_tps\":", at);
  ASSERT_NE(field, std::string::npos);
  auto value = field + std::string("\"decode_tps\":").size();
  auto end = text.find_first_of(",}", value);
  text.replace(value, end - value, "1e400");
  auto r = parse_plan_document(text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("predicted.decode_tps: expected a finite number"), std::string::npos)
      << r.err().message;
}

TEST(plan_document, parse_rejects_garbage_text) {
  EXPECT_FALSE(parse_plan_document("{").ok());
  EXPECT_FALSE(parse_plan_document("[]").ok());
  EXPECT_FALSE(parse_plan_document("{\"version\":1,\"recommendation\":{\"candidate\":3}}").ok());
  auto ok = parse_plan_document(boost::json::serialize(to_json(sample())));
  EXPECT_TRUE(ok.ok());
}

}  // namespace
}  // namespace agifarm::plan

namespace agifarm::plan {
namespace {

// `up` (the supervisor) and every emitter take a backend's command line from backend_argv: per-layer
// expert rules of a hand-written plan come out as the one merged rule the planner writes itself.
TEST(backend_argv, merges_per_layer_expert_rules_into_the_planners_one_rule) {
  backend_spec b;
  b.kind = backend_kind::llama_server;
  b.host = "127.0.0.1";
  b.args = {"-m", "/m/q.gguf"};
  for (int l : {0, 1, 2, 3, 12})
    b.args.insert(b.args.end(),
                  {"-ot", "blk\\." + std::to_string(l) + "\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU"});
  auto argv = backend_argv(b, "/opt/llama", 8081);
  std::vector<std::string> want{"/opt/llama/llama-server",
                                "-m",
                                "/m/q.gguf",
                                "-ot",
                                expert_offload_rule({0, 1, 2, 3, 12}, "CPU"),
                                "--host",
                                "127.0.0.1",
                                "--port",
                                "8081"};
  EXPECT_EQ(argv, want);
  EXPECT_EQ(want[4], "blk\\.([0-3]|12)\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU");
  // a rule that is not a whole-layer expert rule leaves the list as written
  b.args = {"-m", "/m/q.gguf", "-ot", "token_embd=CPU"};
  argv = backend_argv(b, "/opt/llama", 8081);
  EXPECT_EQ(argv[3], "-ot");
  EXPECT_EQ(argv[4], "token_embd=CPU");
}

}  // namespace
}  // namespace agifarm::plan
