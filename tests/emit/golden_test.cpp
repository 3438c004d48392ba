// Golden files: every target on the four plan fixtures, byte for byte.
// To regenerate after an intended change: AGIFARM_REGENERATE_GOLDENS=1 ctest -R EmitGolden (then review
// the diff of tests/emit/golden/ before committing). The backend key is an input of the generators
// (emit_options::backend_key), so the goldens use an obviously fake fixed one and farm.env is compared too.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "emit_test_util.hpp"

namespace agifarm::emit::test {
namespace {
namespace fs = std::filesystem;

struct golden_case {
  std::string plan, target;
};
// Keeps ctest's test names readable (gtest would print the raw bytes of the struct).
void PrintTo(const golden_case& c, std::ostream* os) { *os << c.plan << "/" << c.target; }

class EmitGolden : public ::testing::TestWithParam<golden_case> {};

TEST_P(EmitGolden, MatchesGoldenFiles) {
  const auto& c = GetParam();
  emit_input in = load_plan(c.plan);
  emit_options opt;
  opt.backend_key = k_golden_backend_key;
  auto out = emit_target(c.target, in, opt);
  ASSERT_TRUE(out.ok()) << out.err().message;
  fs::path dir = source_path("tests/emit/golden/" + c.plan + "/" + c.target);
  const char* regen = std::getenv("AGIFARM_REGENERATE_GOLDENS");
  if (regen && std::string(regen) == "1") {
    fs::remove_all(dir);
    auto s = write_files(dir.string(), *out, true);
    ASSERT_TRUE(s.ok()) << s.err().message;
    GTEST_SKIP() << "regenerated " << dir;
  }
  std::set<std::string> expected, actual;
  ASSERT_TRUE(fs::is_directory(dir)) << dir << " is missing; run with AGIFARM_REGENERATE_GOLDENS=1";
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) expected.insert(fs::relative(e.path(), dir).string());
  for (const auto& f : *out) {
    actual.insert(f.path);
    EXPECT_EQ(f.content, read_text((dir / f.path).string()))
        << "file " << f.path << " differs from " << (dir / f.path);
  }
  EXPECT_EQ(actual, expected);
  // Every target explains how to start and stop what it wrote.
  bool has_readme = false;
  for (const auto& f : *out)
    if (f.path == "README.md") {
      has_readme = true;
      EXPECT_NE(f.content.find("## Start"), std::string::npos);
      EXPECT_NE(f.content.find("## Stop"), std::string::npos);
    }
  EXPECT_TRUE(has_readme);
}

std::vector<golden_case> all_cases() {
  std::vector<golden_case> v;
  for (const auto& p : plan_names())
    for (const auto& t : target_names()) v.push_back({p, t});
  return v;
}

INSTANTIATE_TEST_SUITE_P(AllPlans, EmitGolden, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string n = info.param.plan + "_" + info.param.target;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

// What the goldens are about, asserted directly so a regenerated golden cannot silently lose it.
TEST(EmitContent, LlamaScriptUsesThePlansArgvWithMergedOtRules) {
  auto out = emit_llama(load_plan("two-3090"), emit_options{});
  ASSERT_TRUE(out.ok());
  const std::string& s = (*out)[0].content;
  EXPECT_EQ((*out)[0].path, "box.sh");
  EXPECT_NE(s.find("-ot 'blk\\.([0-9]|[1-6][0-9])\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU'"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.find("blk\\.5\\.ffn"), std::string::npos);  // no per-layer rule left
  EXPECT_NE(s.find("--host 127.0.0.1"), std::string::npos);
  EXPECT_NE(s.find("--port 8081"), std::string::npos);
  EXPECT_NE(s.find("--no-mmap"), std::string::npos);
}

TEST(EmitContent, RpcServersBindToTheNodesPrivateAddressWithAWarning) {
  auto out = emit_llama(load_plan("three-nodes"), emit_options{});
  ASSERT_TRUE(out.ok());
  for (const auto& f : *out) {
    if (f.path == "work.sh") {
      EXPECT_NE(f.content.find("-H 192.168.1.11"), std::string::npos);
      EXPECT_NE(f.content.find("never expose it to an untrusted network"), std::string::npos);
    }
    if (f.path == "big.sh") {
      EXPECT_NE(f.content.find("wait_tcp rpc-old-gpu0 old 192.168.1.12 50052"), std::string::npos);
      EXPECT_NE(f.content.find("--rpc 192.168.1.11:50052,192.168.1.11:50053,192.168.1.12:50052"),
                std::string::npos);
    }
  }
}

TEST(EmitContent, ComposePinsGpusAndDoesNotPassTheHostsGpuNumbering) {
  auto out = emit_compose(load_plan("eight-gpu"), emit_options{});
  ASSERT_TRUE(out.ok());
  const std::string& y = (*out)[0].content;
  EXPECT_NE(y.find("device_ids: [\"0\", \"1\", \"2\", \"3\"]"), std::string::npos);
  EXPECT_NE(y.find("device_ids: [\"7\"]"), std::string::npos);
  EXPECT_EQ(y.find("CUDA_VISIBLE_DEVICES"), std::string::npos);
  EXPECT_NE(y.find("\"/models:/models:ro\""), std::string::npos);
  EXPECT_NE(y.find("ghcr.io/ggml-org/llama.cpp:server-cuda"), std::string::npos);
}

TEST(EmitContent, VllmMapsShardsToParallelism) {
  auto eight = emit_vllm(load_plan("eight-gpu"), emit_options{});
  ASSERT_TRUE(eight.ok());
  const std::string& s = (*eight)[0].content;
  EXPECT_NE(s.find("vllm serve Qwen/Qwen3-32B"), std::string::npos);
  EXPECT_NE(s.find("--tensor-parallel-size 4"), std::string::npos);
  EXPECT_NE(s.find("--max-model-len 65536"), std::string::npos);  // 131072 tokens over 2 slots
  auto three = emit_vllm(load_plan("three-nodes"), emit_options{});
  ASSERT_TRUE(three.ok());
  std::string all;
  for (const auto& f : *three) all += f.content;
  EXPECT_NE(all.find("--pipeline-parallel-size 3"), std::string::npos);
  EXPECT_NE(all.find("--enable-expert-parallel"), std::string::npos);
  EXPECT_NE(all.find("ray start --head"), std::string::npos);
  EXPECT_NE(all.find("ray start --block --address=192.168.1.10:6379"), std::string::npos);
}

TEST(EmitContent, DeepspeedOffloadsWhenWeightsDoNotFit) {
  auto small = emit_deepspeed(load_plan("eight-gpu"), emit_options{});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ((*small)[0].path, "ds_zero3.json");
  EXPECT_EQ((*small)[0].content.find("offload_param"), std::string::npos);  // 65 GiB in 96 GiB of GPUs
  EXPECT_NE((*small)[0].content.find("\"bf16\""), std::string::npos);
  auto huge = emit_deepspeed(load_plan("two-3090"), emit_options{});
  ASSERT_TRUE(huge.ok());
  EXPECT_NE((*huge)[0].content.find("\"device\": \"nvme\""),
            std::string::npos);  // 438 GiB > 48 GiB + 70% of 256 GiB
  auto cpu = emit_deepspeed(load_plan("three-nodes"), emit_options{});
  ASSERT_TRUE(cpu.ok());
  EXPECT_NE((*cpu)[0].content.find("\"device\": \"cpu\""),
            std::string::npos);  // fits in 512+128+64 GiB of RAM
}

}  // namespace
}  // namespace agifarm::emit::test
