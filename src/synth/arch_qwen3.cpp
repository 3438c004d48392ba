// qwen3 (dense) and qwen3moe: llama.cpp src/models/qwen3.cpp and qwen3moe.cpp; converter
// conversion/qwen.py (Qwen3Model, Qwen3MoeModel).
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {"tied_embeddings", "qk_norm", "rope_freqs", "rope_scaling",
                                         "rope_scaling_factor", "rope_scaling_orig_ctx"};

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd, D = m.head_dim;
  const std::uint64_t Q = std::uint64_t{m.n_head} * D, KV = std::uint64_t{m.n_head_kv} * D;
  add_embeddings(m, t);
  if (m.rope_freqs) t.add("rope_freqs.weight", {D / 2});
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    t.blk(i, "attn_norm.weight", {E});
    t.blk(i, "attn_q.weight", {E, Q});
    t.blk(i, "attn_k.weight", {E, KV});
    t.blk(i, "attn_v.weight", {E, KV});
    t.blk(i, "attn_output.weight", {Q, E});
    if (m.qk_norm) {
      t.blk(i, "attn_q_norm.weight", {D});
      t.blk(i, "attn_k_norm.weight", {D});
    }
    t.blk(i, "ffn_norm.weight", {E});
    if (m.is_moe()) {
      const std::uint64_t F = m.n_ff_exp, X = m.n_expert;
      t.blk(i, "ffn_gate_inp.weight", {E, X});
      t.blk(i, "ffn_gate_exps.weight", {E, F, X});
      t.blk(i, "ffn_up_exps.weight", {E, F, X});
      t.blk(i, "ffn_down_exps.weight", {F, E, X});
    } else {
      t.blk(i, "ffn_gate.weight", {E, m.n_ff});
      t.blk(i, "ffn_up.weight", {E, m.n_ff});
      t.blk(i, "ffn_down.weight", {m.n_ff, E});
    }
  }
}

void metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv);
  add_rope_scaling_keys(m, kv);
  if (m.is_moe()) kv.u32("expert_feed_forward_length", m.n_ff_exp);
}

void llama_metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv);
  add_rope_scaling_keys(m, kv);
  kv.u32("vocab_size", m.n_vocab);  // conversion/llama.py
  kv.u32("rope.dimension_count", m.head_dim);
}

}  // namespace

extern const arch_family k_family_qwen3;  // declared for the table in arch.cpp
const arch_family k_family_qwen3{"qwen3", false, k_fields, nullptr, tensors, metadata};
extern const arch_family k_family_qwen3moe;  // declared for the table in arch.cpp
const arch_family k_family_qwen3moe{"qwen3moe", true, k_fields, nullptr, tensors, metadata};
// llama (src/models/llama.cpp, conversion/llama.py) has the same block as dense qwen3 without q/k norms.
extern const arch_family k_family_llama;  // declared for the table in arch.cpp
const arch_family k_family_llama{"llama", false, k_fields, nullptr, tensors, llama_metadata};

}  // namespace agifarm::synth
