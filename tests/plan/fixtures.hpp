// Synthetic model shapes for unit tests and benchmarks: Qwen3-like tensor lists with exact byte counts,
// no files involved.
#pragma once

#include <fmt/format.h>

#include "plan/memory_model.hpp"

namespace agifarm::plan::fixtures {

// n_layer layers of `layer_bytes` (split 1/4 attention, 3/4 FFN or experts), token_embd and output
// of `embd_bytes` each. MoE when n_expert > 0 (expert tensors carry the FFN bytes).
inline model_shape make_shape(std::uint64_t n_layer, std::uint64_t layer_bytes, std::uint64_t embd_bytes,
                              std::uint64_t n_expert = 0, std::uint64_t n_embd = 4096) {
  model_shape s;
  s.name = "fixture";
  s.architecture = n_expert ? "qwen3moe" : "qwen3";
  s.file = "/models/fixture.gguf";
  s.n_layer = n_layer;
  s.n_embd = n_embd;
  s.n_head = 32;
  s.n_head_kv = 8;
  s.head_dim_k = s.head_dim_v = 128;
  s.n_vocab = 151936;
  s.n_ctx_train = 40960;
  s.n_ff = n_expert ? 0 : 3 * n_embd;
  s.n_expert = n_expert;
  s.n_expert_used = n_expert ? 8 : 0;
  s.n_ff_exp = n_expert ? 768 : 0;
  s.n_params = (n_layer * layer_bytes + 2 * embd_bytes) * 2;  // ~4 bits per weight
  s.file_bytes = n_layer * layer_bytes + 2 * embd_bytes;
  s.tensors.push_back({"token_embd.weight", embd_bytes, -1, gguf::tensor_class::token_embd});
  for (std::uint64_t l = 0; l < n_layer; ++l) {
    int b = static_cast<int>(l);
    s.tensors.push_back({fmt::format("blk.{}.attn_norm.weight", l), 4 * n_embd, b, gguf::tensor_class::norm});
    s.tensors.push_back(
        {fmt::format("blk.{}.attn_q.weight", l), layer_bytes / 4, b, gguf::tensor_class::attention});
    if (n_expert) {
      for (const char* n : {"gate", "up", "down"})
        s.tensors.push_back({fmt::format("blk.{}.ffn_{}_exps.weight", l, n), layer_bytes / 4, b,
                             gguf::tensor_class::ffn_expert});
    } else {
      for (const char* n : {"gate", "up", "down"})
        s.tensors.push_back(
            {fmt::format("blk.{}.ffn_{}.weight", l, n), layer_bytes / 4, b, gguf::tensor_class::ffn_dense});
    }
  }
  s.tensors.push_back({"output_norm.weight", 4 * n_embd, -1, gguf::tensor_class::norm});
  s.tensors.push_back({"output.weight", embd_bytes, -1, gguf::tensor_class::output});
  for (auto& t : s.tensors) {  // matrices Q4_K (4.5 bits per weight), norms F32
    bool norm = t.cls == gguf::tensor_class::norm;
    t.type = norm ? 0 : 12;
    t.n_elements = norm ? t.bytes / 4 : t.bytes * 256 / 144;
  }
  return s;
}

}  // namespace agifarm::plan::fixtures
