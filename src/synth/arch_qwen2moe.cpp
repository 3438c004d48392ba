// qwen2moe (Qwen1.5-MoE, Qwen2-57B-A14B): llama.cpp src/models/qwen2moe.cpp; converter
// conversion/qwen.py (Qwen2MoeModel). qwen2 (Qwen2 / Qwen2.5 dense, src/models/qwen2.cpp, Qwen2Model):
// the same attention and a dense SwiGLU FFN.
//
// Qwen2 attention (q/k/v biases, q and o n_embd wide) and in every block a routed MoE plus one shared
// expert of n_ff_shexp with a sigmoid gate (ffn_gate_inp_shexp). The config has no head_dim, so no
// key_length / value_length keys are written (llama.cpp takes n_embd / n_head).
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {"attention_bias", "n_ff_shexp", "rope_scaling",
                                         "rope_scaling_factor", "rope_scaling_orig_ctx"};

constexpr std::string_view k_dense_fields[] = {"attention_bias", "tied_embeddings", "rope_scaling",
                                               "rope_scaling_factor", "rope_scaling_orig_ctx"};

std::optional<field_error> check(const model_entry& m) {
  if (std::uint64_t{m.head_dim} * m.n_head != m.n_embd)
    return field_error{"head_dim", "arch qwen2moe sizes q by n_embd: head_dim * n_head must equal n_embd"};
  if (m.n_ff_shexp == 0) return field_error{"n_ff_shexp", needs_field(m, "n_ff_shexp")};
  return std::nullopt;
}

std::optional<field_error> check_dense(const model_entry& m) {
  if (std::uint64_t{m.head_dim} * m.n_head != m.n_embd)
    return field_error{"head_dim", "arch qwen2 sizes q by n_embd: head_dim * n_head must equal n_embd"};
  return std::nullopt;
}

void attention(const model_entry& m, tensor_list& t, std::uint32_t i) {
  const std::uint64_t E = m.n_embd, KV = std::uint64_t{m.n_head_kv} * m.head_dim;
  t.blk(i, "attn_norm.weight", {E});
  add_qkv(t, i, E, E, KV, m.attention_bias);
  t.blk(i, "attn_output.weight", {E, E});
}

void dense_tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    attention(m, t, i);
    t.blk(i, "ffn_norm.weight", {E});
    add_dense_ffn(t, i, E, m.n_ff);
  }
}

void dense_metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv, m.n_head_kv, 0, 0);
  add_rope_scaling_keys(m, kv);
}

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd;
  const std::uint64_t F = m.n_ff_exp, X = m.n_expert, S = m.n_ff_shexp;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    attention(m, t, i);
    t.blk(i, "ffn_norm.weight", {E});
    t.blk(i, "ffn_gate_inp.weight", {E, X});
    add_experts(t, i, E, F, X);
    t.blk(i, "ffn_gate_inp_shexp.weight", {E});
    add_shared_expert(t, i, E, S);
  }
}

void metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv, m.n_head_kv, 0, 0);
  add_rope_scaling_keys(m, kv);
  kv.u32("expert_feed_forward_length", m.n_ff_exp);
  kv.u32("expert_shared_feed_forward_length", m.n_ff_shexp);
}

}  // namespace

extern const arch_family k_family_qwen2moe;  // declared for the table in arch.cpp
const arch_family k_family_qwen2moe{"qwen2moe", true, k_fields, check, tensors, metadata};
extern const arch_family k_family_qwen2;  // declared for the table in arch.cpp
const arch_family k_family_qwen2{"qwen2", false, k_dense_fields, check_dense, dense_tensors, dense_metadata};

}  // namespace agifarm::synth
