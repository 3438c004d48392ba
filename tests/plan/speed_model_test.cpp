// The GPU terms of the speed model that issue 15's calibration added: the dequantize-to-F16 path of
// pre-mid-2024 llama.cpp builds, the per-micro-batch graph cost of prefill, and the expert-read share
// of MoE decode (docs/planning.md, "Speed").
#include "plan/speed_model.hpp"

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "gguf/gguf.hpp"

namespace agifarm::plan {
namespace {

constexpr std::uint64_t k_mib = 1024 * 1024;

// A shape whose layer matrices are all of one ggml type, with element counts set (bytes per weight
// as that type stores them).
model_shape typed_shape(std::string_view type, std::uint64_t n_expert = 0) {
  auto s = fixtures::make_shape(8, 64 * k_mib, 16 * k_mib, n_expert);
  const auto* ti = gguf::find_type(type);
  for (auto& t : s.tensors) {
    if (t.cls == gguf::tensor_class::norm) continue;
    t.type = ti->id;
    t.n_elements = t.bytes * ti->block_size / ti->type_size;
  }
  return s;
}

memory_estimate on_gpu(const model_shape& s) {
  memory_estimate e;
  std::uint64_t dense = 0, expert = 0;
  for (const auto& t : s.tensors) {
    if (t.cls == gguf::tensor_class::ffn_expert)
      expert += t.bytes;
    else if (t.cls != gguf::tensor_class::token_embd && t.cls != gguf::tensor_class::norm)
      dense += t.bytes;
  }
  e.dense_weight_bytes = {dense, 0};
  e.expert_weight_bytes = {expert, 0};
  e.layers_on_device = {static_cast<int>(s.n_layer), 0};
  return e;
}

TEST(speed_model, dequantize_path_writes_and_reads_an_f16_copy_per_micro_batch) {
  // Builds before int8 tensor-core MMQ dequantize each quantized matrix to F16 for cuBLAS: 4 bytes
  // per weight per micro-batch on top of the same prefill otherwise (the GEMM then runs at the F16
  // rate, so the comparison fixes the F16 factor to Q8_0's for the difference to be the traffic).
  const auto s = typed_shape("Q8_0");
  const auto e = on_gpu(s);
  speed_params p = default_speed_params();
  for (auto& t : p.gpu_types)
    if (t.type == "F16") t.factor = p.type_factor_of("Q8_0");
  speed_input in;
  in.shape = &s;
  in.placement = &e;
  in.devices = {{"gpu", 1e12, 100e12, false}};
  in.host = {"host", 50e9, 1e12, true};
  in.n_ubatch = 512;
  in.params = &p;
  const double mmq = 1.0 / estimate_speed(in).prefill_tps;
  speed_params legacy = p;
  legacy.dequant_to_f16 = true;
  in.params = &legacy;
  const double dequant = 1.0 / estimate_speed(in).prefill_tps;
  // every matrix the GPU holds is Q8_0: 32 weights in 34 bytes
  const double expect =
      4.0 * static_cast<double>(e.dense_weight_bytes[0]) * 32 / 34 / (1e12 * k_eta_bw_gpu) / 512;
  EXPECT_NEAR(dequant - mmq, expect, 1e-6 * expect);
  // decode never takes that path
  const double legacy_decode = estimate_speed(in).decode_tps;
  in.params = &p;
  EXPECT_DOUBLE_EQ(legacy_decode, estimate_speed(in).decode_tps);
}

TEST(speed_model, f16_weights_pay_no_dequantize_traffic) {
  const auto s = typed_shape("F16");
  const auto e = on_gpu(s);
  speed_params p = default_speed_params(), legacy = p;
  legacy.dequant_to_f16 = true;
  speed_input in;
  in.shape = &s;
  in.placement = &e;
  in.devices = {{"gpu", 1e12, 100e12, false}};
  in.host = {"host", 50e9, 1e12, true};
  in.params = &p;
  const double now = estimate_speed(in).prefill_tps;
  in.params = &legacy;
  EXPECT_DOUBLE_EQ(estimate_speed(in).prefill_tps, now);
}

TEST(speed_model, each_micro_batch_pays_the_per_layer_graph_cost) {
  // Halving the micro-batch adds the weights' read and the layers' dispatch cost once more per
  // U tokens: (W / (eta * BW) + layers * t_layer) * (1/U_small - 1/U_big) per token.
  const auto s = typed_shape("Q4_K");
  const auto e = on_gpu(s);
  speed_input in;
  in.shape = &s;
  in.placement = &e;
  in.devices = {{"gpu", 1e12, 100e12, false}};
  in.host = {"host", 50e9, 1e12, true};
  in.n_ubatch = 512;
  const double big = 1.0 / estimate_speed(in).prefill_tps;
  in.n_ubatch = 64;
  const double small = 1.0 / estimate_speed(in).prefill_tps;
  const double w = static_cast<double>(e.dense_weight_bytes[0]);
  const double expect =
      (w / (1e12 * k_eta_bw_gpu) + 8 * default_speed_params().layer_overhead_gpu_s) * (1.0 / 64 - 1.0 / 512);
  EXPECT_NEAR(small - big, expect, 1e-6 * expect);
}

TEST(speed_model, gpu_expert_reads_run_at_their_share_of_the_dense_rate) {
  // MoE decode on one GPU: the used experts' bytes are read at eta_bw * gpu_expert_bw, dense bytes
  // at eta_bw; a dense model is untouched by the factor.
  const auto moe = typed_shape("Q4_K", 64);
  const auto e = on_gpu(moe);
  speed_params p = default_speed_params(), slower = p;
  p.gpu_expert_bw = 1.0;
  slower.gpu_expert_bw = 0.5;
  speed_input in;
  in.shape = &moe;
  in.placement = &e;
  in.devices = {{"gpu", 1e12, 100e12, false}};
  in.host = {"host", 50e9, 1e12, true};
  in.params = &p;
  const double t1 = 1.0 / estimate_speed(in).decode_tps;
  in.params = &slower;
  const double t2 = 1.0 / estimate_speed(in).decode_tps;
  const double used = static_cast<double>(e.expert_weight_bytes[0]) * 8 / 64;
  EXPECT_NEAR(t2 - t1, used / (1e12 * k_eta_bw_gpu), 1e-6 * t2);

  const auto dense = typed_shape("Q4_K");
  const auto d = on_gpu(dense);
  in.shape = &dense;
  in.placement = &d;
  in.params = &p;
  const double a = estimate_speed(in).decode_tps;
  in.params = &slower;
  EXPECT_DOUBLE_EQ(estimate_speed(in).decode_tps, a);
}

}  // namespace
}  // namespace agifarm::plan
