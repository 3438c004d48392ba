// Unit: plan::simulate_compute_buffers on hand-made specs. The integration tests (estimate_llama_test,
// server_buffers_test) compare it with llama.cpp itself; these check properties that follow from how
// ggml's scheduler and allocator work, without llama.cpp.
#include "plan/compute_graph.hpp"

#include <gtest/gtest.h>

#include "plan/memory_model.hpp"
#include "plan/server_args.hpp"

namespace agifarm::plan {
namespace {

constexpr std::uint64_t k_mib = 1024 * 1024;

// A Qwen3-8B-like dense model: n_layer layers split evenly over n_dev devices (-1: all on the host).
compute_graph_spec dense(int n_layer, int n_dev, std::int64_t T = 512, std::int64_t kv = 8192) {
  compute_graph_spec s;
  s.qk_norm = true;
  s.n_embd = 4096;
  s.n_head = 32;
  s.n_head_kv = 8;
  s.head_dim_k = s.head_dim_v = 128;
  s.n_ff = 12288;
  s.n_vocab = 151936;
  s.n_tokens = T;
  s.n_outputs = T;
  s.kv_size = kv;
  s.n_devices = n_dev;
  for (int il = 0; il < n_layer; ++il) {
    int d = n_dev == 0 ? -1 : il * n_dev / n_layer;
    layer_weights L;
    for (auto* w : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.q_norm, &L.k_norm, &L.ffn_norm, &L.up,
                    &L.gate, &L.down})
      *w = {d, 4096};
    L.up.bytes = L.gate.bytes = L.down.bytes = 30 * k_mib;
    s.layers.push_back(L);
    s.layer_device.push_back(d);
  }
  s.token_embd = {-1, 300 * k_mib};
  s.output = {n_dev - 1, 300 * k_mib};
  s.output_norm = {n_dev - 1, 16384};
  s.full_offload = n_dev > 0;
  s.offload_ops.assign(n_dev, false);
  return s;
}

TEST(compute_graph, one_device_holds_the_logits_and_the_host_the_inputs) {
  auto s = dense(4, 1);
  auto c = simulate_compute_buffers(s);
  ASSERT_EQ(c.size(), 2u);
  const std::uint64_t logits = 4ull * 151936 * 512;
  EXPECT_GE(c[0], logits);
  EXPECT_LT(c[0], logits + 200 * k_mib);
  // host: the token embeddings it gathers (get_rows) and the inputs, never the logits
  EXPECT_GE(c[1], 4ull * 4096 * 512);
  EXPECT_LT(c[1], logits);
}

TEST(compute_graph, no_device_runs_everything_on_the_host) {
  auto s = dense(4, 0);
  s.output.slot = s.output_norm.slot = -1;
  auto c = simulate_compute_buffers(s);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_GE(c[0], 4ull * 151936 * 512);
}

TEST(compute_graph, pipeline_parallelism_keeps_four_copies_of_each_crossing_input) {
  auto one = dense(8, 2);
  auto four = one;
  four.pipeline_parallel = true;
  auto a = simulate_compute_buffers(one), b = simulate_compute_buffers(four);
  // device 0 receives the embeddings (E x T f32) and the f16 mask (kv x T); 3 more copies of each
  const std::uint64_t inputs = 4ull * 4096 * 512 + 2ull * 8192 * 512;
  EXPECT_GE(b[0], a[0] + 3 * inputs);
  EXPECT_GT(b[1], a[1]);
}

TEST(compute_graph, dropped_norm_pins_copy_one_more_activation_per_later_device) {
  auto kept = dense(8, 2);
  kept.pipeline_parallel = true;
  auto dropped = kept;
  dropped.pins_dropped = true;  // llama-fit-params: the first norm of device 1 runs on device 0
  auto a = simulate_compute_buffers(kept), b = simulate_compute_buffers(dropped);
  EXPECT_EQ(b[0], a[0]);
  EXPECT_EQ(b[1], a[1] + 4ull * 4 * 4096 * 512);  // 4 copies of one E x T f32 activation
}

TEST(compute_graph, without_flash_attention_a_device_holds_the_kq_scores) {
  auto fa = dense(4, 1, 512, 16384);
  auto no_fa = fa;
  no_fa.flash_attn = false;
  auto a = simulate_compute_buffers(fa), b = simulate_compute_buffers(no_fa);
  const std::uint64_t kq = 4ull * 32 * 16384 * 512;  // n_head x n_kv x T f32
  EXPECT_GE(b[0], kq);
  EXPECT_GT(b[0], a[0]);
}

TEST(compute_graph, op_offload_copies_host_weights_into_the_device_buffer) {
  auto s = dense(4, 1);
  s.n_vocab = 1000;  // small logits: the FFN, not the output, sets the device's peak
  for (auto& L : s.layers) L.up.slot = L.gate.slot = L.down.slot = -1;  // FFN weights in RAM
  auto plain = simulate_compute_buffers(s);
  s.offload_ops = {true};  // CUDA: batches of >= 32 tokens run on the GPU, weights copied in
  auto offload = simulate_compute_buffers(s);
  EXPECT_GE(offload[0], plain[0] + 30 * k_mib);
  EXPECT_LT(offload[1], plain[1]);  // the host no longer computes the FFN
}

TEST(compute_graph, compute_grows_with_the_context_through_the_mask) {
  auto small = dense(4, 1, 512, 4096), big = dense(4, 1, 512, 65536);
  auto a = simulate_compute_buffers(small), b = simulate_compute_buffers(big);
  EXPECT_GE(b[1], a[1] + 2ull * (65536 - 4096) * 512);  // the f16 mask input lives on the host
}

TEST(compute_graph, degenerate_shapes_finish) {
  auto s = dense(2, 1);
  s.head_dim_k = s.head_dim_v = 0;  // a header without head sizes, quantized cache: no rotation search
  s.type_k = s.type_v = "q8_0";
  s.n_embd = 0;
  auto c = simulate_compute_buffers(s);
  EXPECT_EQ(c.size(), 2u);
}

TEST(compute_graph, absurd_layer_counts_are_an_error_not_an_allocation) {
  model_shape m;
  m.name = "hostile";
  m.n_layer = 1u << 30;
  m.n_embd = m.n_head = m.n_head_kv = m.head_dim_k = m.head_dim_v = 1;
  auto r = estimate_memory(m, server_args{}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().exit_code, 2);
  EXPECT_NE(r.err().message.find("layers"), std::string::npos) << r.err().message;
}

}  // namespace
}  // namespace agifarm::plan
