#include "plan/memory_model.hpp"

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "plan/devices.hpp"
#include "plan/server_args.hpp"

namespace agifarm::plan {
namespace {

constexpr std::uint64_t k_mib = 1024 * 1024;

server_args args_of(std::vector<std::string> v) {
  auto a = parse_server_args(v);
  EXPECT_TRUE(a.ok()) << (a.ok() ? "" : a.err().message);
  return a.ok() ? *a : server_args{};
}

TEST(server_args, parses_the_placement_flags) {
  auto a = args_of({"-m",
                    "x.gguf",
                    "-c",
                    "32768",
                    "-np",
                    "4",
                    "-ngl",
                    "all",
                    "-ts",
                    "3,1",
                    "-ctk",
                    "q8_0",
                    "-ctv",
                    "q4_0",
                    "-fa",
                    "on",
                    "-ub",
                    "256",
                    "-b",
                    "1024",
                    "--n-cpu-moe",
                    "2",
                    "-ot",
                    "exps=CPU,attn=CUDA0",
                    "--kv-unified",
                    "--rpc",
                    "10.0.0.2:50052,10.0.0.3:50052",
                    "--port",
                    "8080",
                    "--jinja"});
  EXPECT_EQ(a.model, "x.gguf");
  EXPECT_EQ(a.ctx, 32768);
  EXPECT_EQ(a.slots(), 4);
  EXPECT_TRUE(a.unified());
  EXPECT_EQ(a.n_gpu_layers, -2);
  ASSERT_EQ(a.tensor_split.size(), 2u);
  EXPECT_FLOAT_EQ(a.tensor_split[0], 3.0f);
  EXPECT_EQ(a.type_k, "q8_0");
  EXPECT_EQ(a.type_v, "q4_0");
  EXPECT_EQ(a.n_ubatch, 256);
  ASSERT_EQ(a.overrides.size(), 4u);
  EXPECT_EQ(a.overrides[0].pattern, "blk\\.0\\.ffn_(up|down|gate|gate_up)_(ch|)exps");
  EXPECT_EQ(a.overrides[3].buffer, "CUDA0");
  EXPECT_EQ(a.rpc.size(), 2u);
}

TEST(server_args, nested_repetition_in_ot_patterns_is_refused_not_hung_on) {
  // std::regex backtracks exponentially on these (the fuzzer found "p****exs"); llama.cpp would hang too.
  for (std::string bad : {"p****exs=CPU", "blk\\.(a*)*x=CPU", "(a|ab)*c=CPU", "x+*=CPU", "(y{2})+=CPU"}) {
    auto r = parse_server_args(std::vector<std::string>{"-ot", bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.err().message.find("exponential"), std::string::npos) << r.err().message;
  }
  // What people (and agifarm's planner and emit) really write stays accepted.
  for (std::string good : {"blk\\.(0|1|2)\\.ffn_.*_exps=CPU",
                           "blk\\.([0-9]|12|[23][0-9]|4[0-7])\\.ffn_(up|down|gate)_(ch|)exps=CPU", "exps=CPU",
                           "\\.ffn_(up|down)_exps\\.weight=CUDA0", "(?:blk)\\.[0-9]+\\.ffn_.*?_exps=CPU",
                           "blk\\.[0-9]{2}\\.attn=CPU"}) {
    auto r = parse_server_args(std::vector<std::string>{"-ot", good});
    EXPECT_TRUE(r.ok()) << good << ": " << (r.ok() ? "" : r.err().message);
  }
}

TEST(server_args, auto_parallel_means_four_unified_slots) {
  auto a = args_of({"-m", "x.gguf"});
  EXPECT_EQ(a.slots(), 4);
  EXPECT_TRUE(a.unified());
}

TEST(server_args, bad_values_name_the_flag_and_position) {
  for (std::vector<std::string> bad : {std::vector<std::string>{"-c", "lots", "-m", "x"},
                                       {"-ctk", "q3_weird"},
                                       {"-ot", "no-equals-sign"},
                                       {"-ts", "1,-2"},
                                       {"-np", "0"},
                                       {"-sm", "diagonal"},
                                       {"--rpc", "nohostport"},
                                       {"-c"}}) {
    auto r = parse_server_args(bad);
    ASSERT_FALSE(r.ok()) << bad[0];
    EXPECT_NE(r.err().message.find(bad[0]), std::string::npos) << r.err().message;
    EXPECT_EQ(r.err().exit_code, 2);
  }
}

TEST(memory_model, kv_row_bytes_follow_ggml_block_sizes) {
  EXPECT_EQ(kv_row_bytes("f16", 1024), 2048u);
  EXPECT_EQ(kv_row_bytes("q8_0", 1024), 32u * 34);
  EXPECT_EQ(kv_row_bytes("q4_0", 1024), 32u * 18);
  EXPECT_EQ(kv_row_bytes("f32", 10), 40u);
}

TEST(memory_model, layer_split_matches_llama_cpp_assignment) {
  // 4 layers + output over 2 equal devices: layers 0-2 on dev 0, layer 3 and the output on dev 1
  auto s = fixtures::make_shape(4, 64 * k_mib, 80 * k_mib);
  auto e =
      estimate_memory(s, args_of({"-m", "f", "-c", "4096", "-np", "1"}), identical_devices(2, 24ull << 30));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->layer_device, (std::vector<int>{0, 0, 0, 1, 1}));
  // weights: 3 layers (+norms) on dev 0; 1 layer + output on dev 1; token_embd on the host
  EXPECT_NEAR(static_cast<double>(e->devices[0].model_bytes), 3.0 * 64 * k_mib, 65536.0);
  EXPECT_NEAR(static_cast<double>(e->devices[1].model_bytes), 64.0 * k_mib + 80.0 * k_mib, 65536.0);
  EXPECT_EQ(e->host.model_bytes, 80 * k_mib);
  // KV: 4096 cells x (8 heads x 128) x 2 bytes x (K + V) per layer
  const std::uint64_t kv_layer = 4096ull * 1024 * 2 * 2;
  EXPECT_EQ(e->devices[0].context_bytes, 3 * kv_layer);
  EXPECT_EQ(e->devices[1].context_bytes, kv_layer);
  EXPECT_EQ(e->host.context_bytes, 0u);
}

TEST(memory_model, context_is_padded_and_split_per_stream) {
  auto s = fixtures::make_shape(2, 16 * k_mib, 16 * k_mib);
  // 10000 tokens over 3 slots, not unified: n_ctx_seq = pad(pad(10000,256)/3, 256) = 3584, n_ctx = 10752
  auto e =
      estimate_memory(s, args_of({"-m", "f", "-c", "10000", "-np", "3"}), identical_devices(1, 24ull << 30));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->n_ctx_seq, 3584u);
  EXPECT_EQ(e->n_ctx, 10752u);
  EXPECT_EQ(e->n_stream, 3u);
  EXPECT_EQ(e->devices[0].context_bytes, 2ull * 10752 * 1024 * 2 * 2);
  // unified: one stream of pad(10000, 256) = 10240 cells
  auto u = estimate_memory(s, args_of({"-m", "f", "-c", "10000", "-np", "3", "-kvu"}),
                           identical_devices(1, 24ull << 30));
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->n_ctx, 10240u);
  EXPECT_EQ(u->n_stream, 1u);
}

TEST(memory_model, tensor_split_and_partial_offload) {
  auto s = fixtures::make_shape(8, 10 * k_mib, 10 * k_mib);
  // -ts 3,1 -> splits 0.75, 1.0; 9 units: layers 0..6 on dev 0 (il/9 < 0.75), 7 and output on dev 1
  auto e = estimate_memory(s, args_of({"-m", "f", "-c", "4096", "-np", "1", "-ts", "3,1"}),
                           identical_devices(2, 8ull << 30));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->layer_device, (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 1, 1}));
  // -ngl 3: the first 6 layers on the host, layers 6, 7 and the output on the device
  auto p = estimate_memory(s, args_of({"-m", "f", "-c", "4096", "-np", "1", "-ngl", "3"}),
                           identical_devices(1, 8ull << 30));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->layer_device, (std::vector<int>{-1, -1, -1, -1, -1, -1, 0, 0, 0}));
  EXPECT_EQ(p->host.context_bytes, 6ull * 4096 * 1024 * 2 * 2);
}

TEST(memory_model, expert_overrides_move_expert_bytes_to_the_host) {
  auto s = fixtures::make_shape(4, 40 * k_mib, 8 * k_mib, 64);
  auto e = estimate_memory(s, args_of({"-m", "f", "-c", "4096", "-np", "1", "--n-cpu-moe", "2"}),
                           identical_devices(1, 8ull << 30));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->expert_layers_on_host, 2);
  EXPECT_NEAR(static_cast<double>(e->host.model_bytes), 8.0 * k_mib + 2 * 30.0 * k_mib, 65536.0);
  auto all = estimate_memory(s, args_of({"-m", "f", "-c", "4096", "-np", "1", "--cpu-moe"}),
                             identical_devices(1, 8ull << 30));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->expert_layers_on_host, 4);
}

TEST(memory_model, unknown_buffer_and_bad_regex_are_errors) {
  auto s = fixtures::make_shape(2, k_mib, k_mib, 8);
  auto r = estimate_memory(s, args_of({"-m", "f", "-ot", "exps=CUDA7"}), identical_devices(1, 8ull << 30));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("CUDA7"), std::string::npos);
  auto b = estimate_memory(s, args_of({"-m", "f", "-ot", "(unclosed=CPU"}), identical_devices(1, 8ull << 30));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.err().message.find("regex"), std::string::npos);
}

TEST(memory_model, compute_of_one_device_is_at_least_the_logits) {
  auto s = fixtures::make_shape(4, 64 * k_mib, 80 * k_mib);
  auto fit_args = args_of({"-m", "f", "-c", "8192", "-np", "1", "-ub", "512"});
  fit_args.n_outputs_max = 0;  // llama-fit-params: a micro-batch of logits
  auto e = estimate_memory(s, fit_args, identical_devices(1, 24ull << 30));
  ASSERT_TRUE(e.ok());
  EXPECT_GE(e->devices[0].compute_bytes, 151936ull * 512 * 4);
  // llama-server reserves logits for one token per slot only
  auto srv = estimate_memory(s, args_of({"-m", "f", "-c", "8192", "-np", "1", "-ub", "512"}),
                             identical_devices(1, 24ull << 30));
  ASSERT_TRUE(srv.ok());
  EXPECT_LT(srv->devices[0].compute_bytes, e->devices[0].compute_bytes);
  // pipeline parallelism (2 devices, all layers) keeps 4 copies of the inputs: the mask term grows
  auto two = estimate_memory(s, args_of({"-m", "f", "-c", "65536", "-np", "1", "-ub", "512"}),
                             identical_devices(2, 24ull << 30));
  ASSERT_TRUE(two.ok());
  EXPECT_GE(two->devices[0].compute_bytes, 4ull * 2 * 65536 * 512);
}

TEST(memory_model, no_devices_puts_everything_on_the_host) {
  auto s = fixtures::make_shape(2, 8 * k_mib, 8 * k_mib);
  auto e = estimate_memory(s, args_of({"-m", "f", "-c", "4096", "-np", "1"}), {});
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->devices.empty());
  EXPECT_NEAR(static_cast<double>(e->host.model_bytes), 32.0 * k_mib, 65536.0);
  EXPECT_GT(e->host.context_bytes, 0u);
}

}  // namespace
}  // namespace agifarm::plan
