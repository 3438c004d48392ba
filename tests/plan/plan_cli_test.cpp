// Integration: the real agifarm binary plans real (header-only) GGUF files of real model shapes on the
// example inventories: exit codes, the human table, and the plan JSON that emit / up read.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "plan/plan_document.hpp"
#include "support/support.hpp"

namespace agifarm::plan {
namespace {

std::string shape(const std::string& id) {
  static std::string dir = test::temp_dir("plan_cli");
  std::string path = dir + "/" + id + ".gguf";
  auto r = test::run({test::agifarm_cli(), "synth", "shape", "--model", id, "--quant", "Q4_K_M", "-o", path});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return path;
}
std::string example(const std::string& name) {
  return std::string(AGIFARM_SOURCE_DIR) + "/docs/examples/" + name;
}

// stdout only: the JSON goes there, messages to stderr
std::string json_part(const std::string& out) {
  return out.substr(out.find('{'), out.rfind('}') - out.find('{') + 1);
}

TEST(plan_cli, plans_a_model_on_two_gpus_and_prints_the_document) {
  auto m = shape("qwen3-8b");
  auto r = test::run({test::agifarm_cli(), "plan", "--inventory", example("two-3090.yaml"), "--model",
                      "q8b=" + m, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto doc = parse_plan_document(json_part(r.output));
  ASSERT_TRUE(doc.ok()) << doc.err().message;
  EXPECT_EQ(doc->models.at(0).name, "q8b");
  EXPECT_EQ(doc->models.at(0).architecture, "qwen3");
  ASSERT_FALSE(doc->chosen.backends.empty());
  const auto& args = doc->chosen.backends[0].args;
  ASSERT_GE(args.size(), 2u);
  EXPECT_EQ(args[0], "-m");
  EXPECT_EQ(args[1], m);
  EXPECT_GE(doc->roles.size(), 3u);  // fast, code, think by default
  EXPECT_FALSE(doc->recommendation.reasons.empty());
  auto h = test::run({test::agifarm_cli(), "plan", "--inventory", example("two-3090.yaml"), "--model", m});
  ASSERT_EQ(h.exit_code, 0) << h.output;
  EXPECT_NE(h.output.find("recommendation:"), std::string::npos);
  EXPECT_NE(h.output.find("["), std::string::npos);  // memory bars
}

TEST(plan_cli, nothing_fits_exits_3_with_the_reason) {
  auto m = shape("qwen3-235b-a22b");
  auto r = test::run({test::agifarm_cli(), "plan", "--inventory", example("cpu-only.yaml"), "--model", m,
                      "--role", "think:qwen3-235b-a22b:ctx=32768:agents=1"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("does not fit"), std::string::npos) << r.output;
}

TEST(plan_cli, bad_role_and_missing_file_exit_2) {
  auto m = shape("qwen3-0.6b");
  auto r = test::run({test::agifarm_cli(), "plan", "--inventory", example("one-gpu.yaml"), "--model", m,
                      "--role", "fast:nomodel"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("nomodel"), std::string::npos);
  auto f = test::run(
      {test::agifarm_cli(), "plan", "--inventory", example("one-gpu.yaml"), "--model", "/nonexistent.gguf"});
  EXPECT_EQ(f.exit_code, 2) << f.output;
}

TEST(plan_cli, estimate_json_has_the_breakdown_columns) {
  auto m = shape("qwen3-8b");
  auto r = test::run({test::agifarm_cli(), "estimate", "--devices", "2", "--json", "--", "-m", m, "-c",
                      "16384", "-np", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto v = boost::json::parse(json_part(r.output));
  const auto& devs = v.at("devices").as_array();
  ASSERT_EQ(devs.size(), 2u);
  for (const auto& d : devs) {
    EXPECT_GT(d.at("model_bytes").to_number<double>(), 1e9);
    EXPECT_TRUE(d.as_object().contains("context_bytes"));
    EXPECT_TRUE(d.as_object().contains("compute_bytes"));
  }
  EXPECT_TRUE(v.at("host").as_object().contains("total_bytes"));
  auto bad = test::run({test::agifarm_cli(), "estimate", "--devices", "1", "--", "-m", m, "-ctk", "q7"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("-ctk"), std::string::npos);
}

}  // namespace
}  // namespace agifarm::plan
