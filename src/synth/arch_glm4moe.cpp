// glm4moe (GLM-4.5, GLM-4.5-Air, GLM-4.6): llama.cpp src/models/glm4-moe.cpp; converter
// conversion/glm.py (Glm4MoeModel).
//
// Blocks: attention with q/k/v biases (q/k norms only on some models), a post-attention norm (no
// ffn_norm); the first n_layer_dense_lead blocks have a dense FFN, the others route over n_expert
// experts with a sigmoid router and its correction bias (exp_probs_b, required) plus n_expert_shared
// shared experts. The checkpoint's next-token-prediction blocks (num_nextn_predict_layers) are kept
// by the converter and counted in block_count: each is a full MoE block plus nextn.eh_proj, enorm,
// hnorm, its own embed_tokens and shared_head_head (n_embd x n_vocab each) and shared_head_norm.
// llama.cpp loads them (unless told to skip MTP) but runs no layer of them in the main graph.
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {"tied_embeddings",      "qk_norm",
                                         "attention_bias",       "partial_rotary_factor",
                                         "n_expert_shared",      "n_layer_dense_lead",
                                         "n_expert_groups",      "n_group_used",
                                         "expert_weights_scale", "expert_weights_norm",
                                         "n_layer_nextn",        "rope_scaling",
                                         "rope_scaling_factor",  "rope_scaling_orig_ctx"};

std::optional<field_error> check(const model_entry& m) {
  if (m.n_layer_dense_lead > 0 && m.n_ff == 0) return field_error{"n_ff", needs_field(m, "n_ff")};
  if (m.n_layer_dense_lead >= m.n_layer)
    return field_error{"n_layer_dense_lead", "'n_layer_dense_lead' must leave at least one MoE block"};
  if (m.partial_rotary_factor > 1)
    return field_error{"partial_rotary_factor", "'partial_rotary_factor' must be at most 1"};
  if (rotary_dims(m) == 0 || rotary_dims(m) % 2 != 0)
    return field_error{"partial_rotary_factor",
                       "head_dim * partial_rotary_factor must be a positive even number"};
  return check_expert_groups(m);
}

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd, D = m.head_dim, V = m.n_vocab;
  const std::uint64_t Q = std::uint64_t{m.n_head} * D, KV = std::uint64_t{m.n_head_kv} * D;
  const std::uint64_t F = m.n_ff_exp, X = m.n_expert, S = F * m.n_expert_shared;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.block_count(); ++i) {
    t.blk(i, "attn_norm.weight", {E});
    add_qkv(t, i, E, Q, KV, m.attention_bias);
    t.blk(i, "attn_output.weight", {Q, E});
    if (m.qk_norm) {
      t.blk(i, "attn_q_norm.weight", {D});
      t.blk(i, "attn_k_norm.weight", {D});
    }
    t.blk(i, "post_attention_norm.weight", {E});
    if (i >= m.n_layer_dense_lead) {
      t.blk(i, "ffn_gate_inp.weight", {E, X});
      t.blk(i, "exp_probs_b.bias", {X});
      add_experts(t, i, E, F, X);
      if (S > 0) add_shared_expert(t, i, E, S);
    } else {
      add_dense_ffn(t, i, E, m.n_ff);
    }
    if (i >= m.n_layer) {
      t.blk(i, "nextn.eh_proj.weight", {2 * E, E});
      t.blk(i, "nextn.enorm.weight", {E});
      t.blk(i, "nextn.hnorm.weight", {E});
      t.blk(i, "nextn.embed_tokens.weight", {E, V});
      t.blk(i, "nextn.shared_head_head.weight", {E, V});
      t.blk(i, "nextn.shared_head_norm.weight", {E});
    }
  }
}

void metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv);
  if (m.n_expert_groups) {
    kv.u32("expert_group_count", m.n_expert_groups);
    kv.u32("expert_group_used_count", m.n_group_used);
  }
  add_rope_scaling_keys(m, kv);
  kv.u32("rope.dimension_count", rotary_dims(m));
  kv.u32("expert_feed_forward_length", m.n_ff_exp);
  kv.u32("expert_shared_count", m.n_expert_shared);
  kv.u32("leading_dense_block_count", m.n_layer_dense_lead);
  kv.u32("expert_gating_func", 2);  // sigmoid, always (Glm4MoeModel)
  if (m.expert_weights_scale > 0) kv.f32("expert_weights_scale", m.expert_weights_scale);
  kv.boolean("expert_weights_norm", m.expert_weights_norm);
  if (m.n_layer_nextn) kv.u32("nextn_predict_layers", m.n_layer_nextn);
}

}  // namespace

extern const arch_family k_family_glm4moe;  // declared for the table in arch.cpp
const arch_family k_family_glm4moe{"glm4moe", true, k_fields, check, tensors, metadata};

}  // namespace agifarm::synth
