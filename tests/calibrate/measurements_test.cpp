// The measurements parser: rows, the calibrate block, and errors that name file:line.
#include <gtest/gtest.h>

#include "calibrate/calibrate.hpp"

namespace agifarm::calibrate {
namespace {

TEST(measurements, parses_rows_and_the_calibrate_block) {
  auto r = parse_measurements(R"(measurements:
  - id: a
    setup: rpc
    prefill: {test: pp512, tps: 100.5}
    decode: null
    calibrate: {model: llama-3-8b, quant: Q4_K_M, gpus: [rtx3090, rtx4090], nodes: [1, 0], network_gbit: 5,
                prompt: 128, gen: 64, depth: 10, args: "-sm layer", use: prefill, cpu: ryzen9-5900x}
  - id: b
    decode: {test: tg128, tps: 20}
    calibrate: {skip: "no shape"}
  - id: c
)",
                              "m.yaml");
  ASSERT_TRUE(r.ok()) << r.err().message;
  ASSERT_EQ(r->size(), 3u);
  const auto& a = (*r)[0];
  EXPECT_EQ(a.setup, "rpc");
  EXPECT_DOUBLE_EQ(a.prefill_tps, 100.5);
  EXPECT_EQ(a.decode_tps, 0);
  ASSERT_TRUE(a.calib.has_value());
  EXPECT_EQ(a.calib->gpus, (std::vector<std::string>{"rtx3090", "rtx4090"}));
  EXPECT_EQ(a.calib->nodes, (std::vector<int>{1, 0}));
  EXPECT_EQ(a.calib->prompt, 128);
  EXPECT_EQ(a.calib->depth, 10);
  EXPECT_FALSE(a.calib->use_decode);
  EXPECT_TRUE(a.calib->use_prefill);
  EXPECT_DOUBLE_EQ(a.calib->network_gbit, 5);
  EXPECT_EQ((*r)[1].calib->skip, "no shape");
  EXPECT_FALSE((*r)[2].calib.has_value());
}

TEST(measurements, errors_name_the_file_line_and_key) {
  auto dup = parse_measurements("measurements:\n  - id: a\n  - id: a\n", "m.yaml");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.err().exit_code, 2);
  EXPECT_NE(dup.err().message.find("m.yaml:3"), std::string::npos) << dup.err().message;
  auto nodes = parse_measurements(
      "measurements:\n  - id: a\n    calibrate: {model: m, quant: Q4_0, gpus: [x], nodes: [0, 1]}\n",
      "m.yaml");
  ASSERT_FALSE(nodes.ok());
  EXPECT_NE(nodes.err().message.find("one machine per GPU"), std::string::npos) << nodes.err().message;
  auto key = parse_measurements(
      "measurements:\n  - id: a\n    calibrate: {model: m, quant: Q4_0, gpus: [x], colour: red}\n", "m.yaml");
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.err().message.find("colour"), std::string::npos) << key.err().message;
  auto tps = parse_measurements("measurements:\n  - id: a\n    decode: {tps: fast}\n", "m.yaml");
  ASSERT_FALSE(tps.ok());
  EXPECT_EQ(tps.err().message.rfind("m.yaml:", 0), 0u) << tps.err().message;
  EXPECT_FALSE(parse_measurements("[1, 2", "m.yaml").ok());
}

TEST(measurements, split_is_a_fixed_function_of_the_id) {
  // FNV-1a 32 of "g" is 3792446982, divisible by 3 -> holdout; "a" (3826002220) is not
  EXPECT_EQ(split_of("g"), split::holdout);
  EXPECT_EQ(split_of("a"), split::fit);
  EXPECT_EQ(split_of("xd-3090-llama3-8b-q4km"), split_of(std::string("xd-3090-llama3-8b-q4km")));
}

}  // namespace
}  // namespace agifarm::calibrate
