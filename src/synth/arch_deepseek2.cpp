// deepseek2 (DeepSeek-V2/V2.5/V3/R1, Kimi-K2): llama.cpp src/models/deepseek2.cpp; converter
// conversion/deepseek.py (DeepseekV2Model).
//
// Multi-head latent attention: q through a low-rank pair (attn_q_a, its norm, attn_q_b; a plain attn_q
// for the "lite" models without q_lora_rank), one shared latent kv projection attn_kv_a_mqa
// (kv_lora_rank + rope dims, MQA with one "head"), and kv_b split by the converter into per-head
// attn_k_b / attn_v_b (3-D) for the absorbed form. The converter writes head_count_kv 1,
// key_length = kv_lora_rank + qk_rope_head_dim, value_length = kv_lora_rank (the latent cache row)
// and key_length_mla / value_length_mla (the decompressed head sizes). The first
// n_layer_dense_lead blocks have a dense FFN of n_ff; the others route over n_expert experts plus
// n_expert_shared shared ones of n_ff_exp each. The next-token-prediction block of V3 is dropped by
// the converter (skip_mtp).
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {
    "tied_embeddings",     "n_layer_dense_lead",   "n_expert_shared",     "n_expert_groups",   "n_group_used",
    "expert_gating",       "expert_weights_scale", "expert_weights_norm", "expert_probs_bias", "q_lora_rank",
    "kv_lora_rank",        "qk_nope_head_dim",     "qk_rope_head_dim",    "v_head_dim",        "rope_scaling",
    "rope_scaling_factor", "rope_scaling_orig_ctx"};

// llama.cpp's deepseek2 loader reads no q_lora_rank for these ("lite") block counts.
bool lite(const model_entry& m) {
  return m.n_layer == 27 || m.n_layer == 26 || (m.n_layer == 48 && m.n_vocab == 128256);
}

std::optional<field_error> check(const model_entry& m) {
  for (auto [field, v] : {std::pair<const char*, std::uint32_t>{"kv_lora_rank", m.kv_lora_rank},
                          {"qk_nope_head_dim", m.qk_nope_head_dim},
                          {"qk_rope_head_dim", m.qk_rope_head_dim},
                          {"v_head_dim", m.v_head_dim},
                          {"n_expert_shared", m.n_expert_shared}})
    if (v == 0) return field_error{field, needs_field(m, field)};
  if (m.qk_rope_head_dim % 2 != 0) return field_error{"qk_rope_head_dim", "'qk_rope_head_dim' must be even"};
  if (lite(m) && m.q_lora_rank != 0)
    return field_error{"q_lora_rank",
                       "llama.cpp reads no q_lora_rank for a deepseek2 model of 26 or 27 blocks (its 'lite' "
                       "rule): such a model must have none"};
  if (!lite(m) && m.q_lora_rank == 0)
    return field_error{"q_lora_rank",
                       "llama.cpp requires 'q_lora_rank' for deepseek2 models other than the "
                       "'lite' ones (26 or 27 blocks)"};
  if (m.n_layer_dense_lead >= m.n_layer)
    return field_error{"n_layer_dense_lead", "'n_layer_dense_lead' must leave at least one MoE block"};
  if (m.n_layer_dense_lead > 0 && m.n_ff == 0) return field_error{"n_ff", needs_field(m, "n_ff")};
  return check_expert_groups(m);
}

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd, H = m.n_head;
  const std::uint64_t k_mla = std::uint64_t{m.qk_nope_head_dim} + m.qk_rope_head_dim;
  const std::uint64_t kv_lora = m.kv_lora_rank, q_lora = m.q_lora_rank;
  const std::uint64_t F = m.n_ff_exp, X = m.n_expert, S = F * m.n_expert_shared;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    t.blk(i, "attn_norm.weight", {E});
    if (q_lora > 0) {
      t.blk(i, "attn_q_a_norm.weight", {q_lora});
      t.blk(i, "attn_q_a.weight", {E, q_lora});
      t.blk(i, "attn_q_b.weight", {q_lora, H * k_mla});
    } else {
      t.blk(i, "attn_q.weight", {E, H * k_mla});
    }
    t.blk(i, "attn_kv_a_norm.weight", {kv_lora});
    t.blk(i, "attn_kv_a_mqa.weight", {E, kv_lora + m.qk_rope_head_dim});
    t.blk(i, "attn_k_b.weight", {m.qk_nope_head_dim, kv_lora, H});
    t.blk(i, "attn_v_b.weight", {kv_lora, m.v_head_dim, H});
    t.blk(i, "attn_output.weight", {H * m.v_head_dim, E});
    t.blk(i, "ffn_norm.weight", {E});
    if (i < m.n_layer_dense_lead) {
      add_dense_ffn(t, i, E, m.n_ff);
    } else {
      t.blk(i, "ffn_gate_inp.weight", {E, X});
      if (m.expert_probs_bias) t.blk(i, "exp_probs_b.bias", {X});
      add_experts(t, i, E, F, X);
      add_shared_expert(t, i, E, S);
    }
  }
}

void metadata(const model_entry& m, key_list& kv) {
  // MLA: one latent "KV head" whose key row is kv_lora_rank + rope dims and value row kv_lora_rank
  add_common_keys(m, kv, 1, m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank);
  if (m.n_expert_groups) {
    kv.u32("expert_group_count", m.n_expert_groups);
    kv.u32("expert_group_used_count", m.n_group_used);
  }
  if (!m.expert_gating.empty()) kv.u32("expert_gating_func", m.expert_gating == "sigmoid" ? 2 : 1);
  add_rope_scaling_keys(m, kv);
  kv.u32("leading_dense_block_count", m.n_layer_dense_lead);
  kv.u32("vocab_size", m.n_vocab);
  if (m.q_lora_rank) kv.u32("attention.q_lora_rank", m.q_lora_rank);
  kv.u32("attention.kv_lora_rank", m.kv_lora_rank);
  kv.u32("attention.key_length_mla", m.qk_nope_head_dim + m.qk_rope_head_dim);
  kv.u32("attention.value_length_mla", m.v_head_dim);
  kv.u32("expert_feed_forward_length", m.n_ff_exp);
  kv.u32("expert_shared_count", m.n_expert_shared);
  if (m.expert_weights_scale > 0) kv.f32("expert_weights_scale", m.expert_weights_scale);
  if (m.expert_weights_norm) kv.boolean("expert_weights_norm", true);
  kv.u32("rope.dimension_count", m.qk_rope_head_dim);
}

}  // namespace

extern const arch_family k_family_deepseek2;  // declared for the table in arch.cpp
const arch_family k_family_deepseek2{"deepseek2", true, k_fields, check, tensors, metadata};

}  // namespace agifarm::synth
