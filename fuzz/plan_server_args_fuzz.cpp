// Fuzzes the llama-server argument parser of `agifarm estimate` (arguments separated by NUL or newline)
// and, for what parses, the memory model on a fixed synthetic MoE shape and 0-3 devices.
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "plan/memory_model.hpp"
#include "plan/server_args.hpp"

using namespace agifarm;

static plan::model_shape fixture() {
  plan::model_shape s;
  s.architecture = "qwen3moe";
  s.n_layer = 6;
  s.n_embd = 256;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim_k = s.head_dim_v = 64;
  s.n_vocab = 1000;
  s.n_ctx_train = 4096;
  s.n_expert = 8;
  s.n_expert_used = 2;
  s.n_ff_exp = 128;
  s.tensors.push_back({"token_embd.weight", 512000, -1, gguf::tensor_class::token_embd});
  for (int l = 0; l < 6; ++l) {
    s.tensors.push_back({fmt::format("blk.{}.attn_q.weight", l), 131072, l, gguf::tensor_class::attention});
    s.tensors.push_back(
        {fmt::format("blk.{}.ffn_up_exps.weight", l), 524288, l, gguf::tensor_class::ffn_expert});
  }
  s.tensors.push_back({"output.weight", 512000, -1, gguf::tensor_class::output});
  return s;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::vector<std::string> args(1);
  for (std::size_t i = 1; i < size; ++i) {
    char c = static_cast<char>(data[i]);
    if (c == '\0' || c == '\n')
      args.emplace_back();
    else
      args.back() += c;
  }
  auto parsed = plan::parse_server_args(args);
  if (!parsed) return 0;
  // keep regexes small: std::regex compiles recursively (llama.cpp has the same limit in practice)
  for (const auto& o : parsed->overrides)
    if (o.pattern.size() > 48) return 0;
  if (parsed->ctx > (1 << 20)) parsed->ctx = 1 << 20;
  static const plan::model_shape shape = fixture();
  std::vector<plan::device_desc> devs;
  for (int i = 0; i < data[0] % 4; ++i)
    devs.push_back({fmt::format("Dev{}", i), {fmt::format("Dev{}", i)}, 1ull << 30, i % 2 == 0});
  auto est = plan::estimate_memory(shape, *parsed, devs);
  if (est && est->devices.size() != devs.size()) __builtin_trap();
  return 0;
}
