// Planner speed: 5 models (dense and MoE, 0.6B-235B-like shapes) over 8 nodes x 8 GPUs with every
// strategy, the whole make_plan. Goal: well under a second.
//   build/<dir>/bench/plan_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "plan/planner.hpp"

namespace {

using namespace agifarm;
constexpr std::uint64_t k_mib = 1024 * 1024;

plan::model_shape shape(const std::string& name, std::uint64_t n_layer, std::uint64_t layer_mib,
                        std::uint64_t n_expert, std::uint64_t n_embd) {
  plan::model_shape s;
  s.name = name;
  s.architecture = n_expert ? "qwen3moe" : "qwen3";
  s.file = "/models/" + name + ".gguf";
  s.n_layer = n_layer;
  s.n_embd = n_embd;
  s.n_head = n_embd / 128;
  s.n_head_kv = 4;
  s.head_dim_k = s.head_dim_v = 128;
  s.n_vocab = 151936;
  s.n_ctx_train = 40960;
  s.n_ff = n_expert ? 0 : 3 * n_embd;
  s.n_expert = n_expert;
  s.n_expert_used = n_expert ? 8 : 0;
  s.n_ff_exp = 768;
  std::uint64_t embd = n_embd * 151936 / 2;
  s.tensors.push_back({"token_embd.weight", embd, -1, gguf::tensor_class::token_embd});
  for (std::uint64_t l = 0; l < n_layer; ++l) {
    int b = static_cast<int>(l);
    for (const char* t : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"})
      s.tensors.push_back(
          {fmt::format("blk.{}.{}.weight", l, t), layer_mib * k_mib / 16, b, gguf::tensor_class::attention});
    for (const char* t : {"gate", "up", "down"})
      s.tensors.push_back({fmt::format("blk.{}.ffn_{}{}.weight", l, t, n_expert ? "_exps" : ""),
                           layer_mib * k_mib / 4, b,
                           n_expert ? gguf::tensor_class::ffn_expert : gguf::tensor_class::ffn_dense});
  }
  s.tensors.push_back({"output_norm.weight", 4 * n_embd, -1, gguf::tensor_class::norm});
  s.tensors.push_back({"output.weight", embd, -1, gguf::tensor_class::output});
  s.n_params = 0;
  for (const auto& t : s.tensors) s.file_bytes += t.bytes;
  s.n_params = s.file_bytes * 2;
  return s;
}

hw::inventory eight_by_eight() {
  hw::inventory inv;
  for (int n = 0; n < 8; ++n) {
    hw::node nd;
    nd.name = fmt::format("srv{}", n);
    nd.address = fmt::format("10.0.0.{}", n + 1);
    nd.ram_bytes = 512ull << 30;
    nd.ram_bandwidth_bytes_per_s = 200e9;
    nd.cpu_peak_flops = 3e12;
    for (int g = 0; g < 8; ++g) {
      hw::gpu x;
      x.name = "rtx4090";
      x.index = g;
      x.vendor = hw::gpu_vendor::nvidia;
      x.vram_bytes = 24ull << 30;
      x.bandwidth_bytes_per_s = 1008e9;
      x.fp16_tflops = 165;
      nd.gpus.push_back(x);
    }
    inv.nodes.push_back(nd);
  }
  return inv;
}

void BM_plan_5_models_64_gpus(benchmark::State& state) {
  auto inv = eight_by_eight();
  std::vector<plan::plan_model> models;
  models.push_back({"qwen3-0.6b", shape("qwen3-0.6b", 28, 12, 0, 1024), ""});
  models.push_back({"qwen3-8b", shape("qwen3-8b", 36, 130, 0, 4096), ""});
  models.push_back({"qwen3-32b", shape("qwen3-32b", 64, 290, 0, 5120), ""});
  models.push_back({"qwen3-30b-a3b", shape("qwen3-30b-a3b", 48, 360, 128, 2048), ""});
  models.push_back({"qwen3-235b-a22b", shape("qwen3-235b-a22b", 94, 1500, 128, 4096), ""});
  std::vector<plan::role_request> roles{{"fast", "qwen3-0.6b", 8192, 8},
                                        {"chat", "qwen3-8b", 16384, 8},
                                        {"code", "qwen3-32b", 32768, 4},
                                        {"agent", "qwen3-30b-a3b", 32768, 8},
                                        {"think", "qwen3-235b-a22b", 65536, 2}};
  std::size_t candidates = 0;
  for (auto _ : state) {
    auto d = plan::make_plan(inv, models, roles);
    if (!d) state.SkipWithError(d.err().message.c_str());
    candidates = d->candidates.size();
    benchmark::DoNotOptimize(d);
  }
  state.counters["candidates"] = static_cast<double>(candidates);
}
BENCHMARK(BM_plan_5_models_64_gpus)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
