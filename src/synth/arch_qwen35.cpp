// Hybrid gated-delta-net models: qwen35moe (Qwen3.5 / 3.6 MoE, llama.cpp src/models/qwen35moe.cpp),
// qwen35 (the dense Qwen3.5 / 3.6, src/models/qwen35.cpp: the same blocks with one SwiGLU FFN instead
// of the experts) and qwen3next (Qwen3-Next, src/models/qwen3next.cpp); converter conversion/qwen.py
// (Qwen3NextModel, _LinearAttentionVReorderBase, Qwen3_5TextModel, Qwen3_5MoeTextModel).
//
// Block i of the n_layer trunk blocks is full (gated) attention when (i + 1) % full_attention_interval
// == 0 and a gated-delta-net ("linear attention") layer otherwise; the loader marks the latter
// recurrent (is_recr) unless the file carries <arch>.attention.recurrent_layers. Every block ends in a
// routed MoE plus one shared expert with a sigmoid gate (ffn_gate_inp_shexp). Full-attention blocks:
// q projection twice n_head * head_dim wide (query and output gate), q/k norms. Delta-net blocks:
// fused qkv (2 * key_dim + value_dim), the z gate, a depthwise conv over the qkv channels, per-value-
// head dt bias and A, the beta/alpha projections (qwen35moe: two tensors, qwen3next: one ssm_ba), a
// norm and an output projection. Optional next-token-prediction blocks (n_layer_nextn) are
// full-attention blocks with nextn.eh_proj / enorm / hnorm / shared_head_norm.
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {
    "tied_embeddings",         "partial_rotary_factor", "n_ff_shexp",           "linear_conv_kernel_dim",
    "linear_key_head_dim",     "linear_value_head_dim", "linear_num_key_heads", "linear_num_value_heads",
    "full_attention_interval", "n_layer_nextn",         "rope_scaling",         "rope_scaling_factor",
    "rope_scaling_orig_ctx"};

std::uint32_t interval(const model_entry& m) {
  return m.full_attention_interval ? m.full_attention_interval : 4;
}

bool is_full_attention(const model_entry& m, std::uint32_t i) {
  return i >= m.n_layer || (i + 1) % interval(m) == 0;
}

std::optional<field_error> check(const model_entry& m) {
  for (auto [field, v] :
       {std::pair<const char*, std::uint32_t>{"linear_conv_kernel_dim", m.linear_conv_kernel_dim},
        {"linear_key_head_dim", m.linear_key_head_dim},
        {"linear_value_head_dim", m.linear_value_head_dim},
        {"linear_num_key_heads", m.linear_num_key_heads},
        {"linear_num_value_heads", m.linear_num_value_heads}})
    if (v == 0) return field_error{field, needs_field(m, field)};
  // llama.cpp sizes both key and value heads of the delta net from ssm.state_size (= key head dim)
  if (m.linear_value_head_dim != m.linear_key_head_dim)
    return field_error{"linear_value_head_dim",
                       "llama.cpp's loader takes the delta-net value head size from the key head size: "
                       "'linear_value_head_dim' must equal 'linear_key_head_dim'"};
  if (m.linear_num_value_heads % m.linear_num_key_heads != 0)
    return field_error{"linear_num_value_heads",
                       "'linear_num_value_heads' must be a multiple of 'linear_num_key_heads'"};
  if (m.n_expert > 0 && m.n_ff_shexp == 0 && m.n_ff == 0)
    return field_error{"n_ff_shexp",
                       "the shared expert needs 'n_ff_shexp' (or 'n_ff', llama.cpp's fallback)"};
  if (m.partial_rotary_factor > 1)
    return field_error{"partial_rotary_factor", "'partial_rotary_factor' must be at most 1"};
  if (rotary_dims(m) == 0 || rotary_dims(m) % 2 != 0)
    return field_error{"partial_rotary_factor",
                       "head_dim * partial_rotary_factor must be a positive even number"};
  return std::nullopt;
}

void tensors(const model_entry& m, tensor_list& t, bool separate_beta_alpha) {
  const std::uint64_t E = m.n_embd, D = m.head_dim, H = m.n_head, KVH = m.n_head_kv;
  const std::uint64_t F = m.n_ff_exp, X = m.n_expert, S = m.n_ff_shexp ? m.n_ff_shexp : m.n_ff;
  // src/models/qwen35moe.cpp load_block_trunk: head_k_dim = head_v_dim = ssm_d_state,
  // n_k_heads = ssm_n_group, n_v_heads = ssm_dt_rank
  const std::uint64_t d_state = m.linear_key_head_dim, n_k = m.linear_num_key_heads,
                      n_v = m.linear_num_value_heads;
  const std::uint64_t key_dim = d_state * n_k, value_dim = d_state * n_v, conv_dim = 2 * key_dim + value_dim;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.block_count(); ++i) {
    t.blk(i, "attn_norm.weight", {E});
    t.blk(i, "post_attention_norm.weight", {E});
    if (is_full_attention(m, i)) {
      t.blk(i, "attn_q.weight", {E, 2 * H * D});  // query and its output gate
      t.blk(i, "attn_k.weight", {E, KVH * D});
      t.blk(i, "attn_v.weight", {E, KVH * D});
      t.blk(i, "attn_output.weight", {H * D, E});
      t.blk(i, "attn_q_norm.weight", {D});
      t.blk(i, "attn_k_norm.weight", {D});
    } else {
      t.blk(i, "attn_qkv.weight", {E, conv_dim});
      t.blk(i, "attn_gate.weight", {E, value_dim});
      t.blk(i, "ssm_conv1d.weight", {m.linear_conv_kernel_dim, conv_dim});
      t.blk(i, "ssm_dt.bias", {n_v});
      t.blk(i, "ssm_a", {n_v});
      if (separate_beta_alpha) {
        t.blk(i, "ssm_beta.weight", {E, n_v});
        t.blk(i, "ssm_alpha.weight", {E, n_v});
      } else {
        t.blk(i, "ssm_ba.weight", {E, 2 * n_v});
      }
      t.blk(i, "ssm_norm.weight", {d_state});
      t.blk(i, "ssm_out.weight", {value_dim, E});
    }
    if (X == 0) {  // qwen35: dense SwiGLU
      add_dense_ffn(t, i, E, m.n_ff);
    } else {
      t.blk(i, "ffn_gate_inp.weight", {E, X});
      add_experts(t, i, E, F, X);
      t.blk(i, "ffn_gate_inp_shexp.weight", {E});
      add_shared_expert(t, i, E, S);
    }
    if (i >= m.n_layer) {
      t.blk(i, "nextn.eh_proj.weight", {2 * E, E});
      t.blk(i, "nextn.enorm.weight", {E});
      t.blk(i, "nextn.hnorm.weight", {E});
      t.blk(i, "nextn.shared_head_norm.weight", {E});
    }
  }
}

void qwen35moe_tensors(const model_entry& m, tensor_list& t) { tensors(m, t, true); }
void qwen3next_tensors(const model_entry& m, tensor_list& t) { tensors(m, t, false); }

void metadata(const model_entry& m, key_list& kv, bool mrope) {
  add_common_keys(m, kv);
  add_rope_scaling_keys(m, kv);
  if (m.n_expert) kv.u32("expert_feed_forward_length", m.n_ff_exp);
  if (m.n_expert && m.n_ff_shexp) kv.u32("expert_shared_feed_forward_length", m.n_ff_shexp);
  kv.u32("ssm.conv_kernel", m.linear_conv_kernel_dim);
  kv.u32("ssm.state_size", m.linear_key_head_dim);
  kv.u32("ssm.group_count", m.linear_num_key_heads);
  kv.u32("ssm.time_step_rank", m.linear_num_value_heads);
  kv.u32("ssm.inner_size", m.linear_value_head_dim * m.linear_num_value_heads);
  kv.u32("full_attention_interval", interval(m));
  kv.u32("rope.dimension_count", rotary_dims(m));
  // _Qwen35MRopeMixin: interleaved MRoPE sections, required by the qwen35moe loader
  if (mrope) kv.u32_array("rope.dimension_sections", {11, 11, 10, 0});
  if (m.n_layer_nextn) kv.u32("nextn_predict_layers", m.n_layer_nextn);
}

void qwen35moe_metadata(const model_entry& m, key_list& kv) { metadata(m, kv, true); }
void qwen3next_metadata(const model_entry& m, key_list& kv) { metadata(m, kv, false); }

}  // namespace

extern const arch_family k_family_qwen35moe;  // declared for the table in arch.cpp
const arch_family k_family_qwen35moe{"qwen35moe",        true, k_fields, check, qwen35moe_tensors,
                                     qwen35moe_metadata, true};
extern const arch_family k_family_qwen35;  // declared for the table in arch.cpp
const arch_family k_family_qwen35{"qwen35", false, k_fields, check, qwen35moe_tensors, qwen35moe_metadata};
extern const arch_family k_family_qwen3next;  // declared for the table in arch.cpp
const arch_family k_family_qwen3next{"qwen3next",        true, k_fields, check, qwen3next_tensors,
                                     qwen3next_metadata, true};

}  // namespace agifarm::synth
