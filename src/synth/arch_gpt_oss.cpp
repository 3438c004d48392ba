// gpt-oss (OpenAI gpt-oss-20b / -120b): llama.cpp src/models/openai-moe.cpp (LLM_ARCH_OPENAI_MOE,
// "gpt-oss"); converter conversion/gpt_oss.py.
//
// Every block: attention with q/k/v/o biases and one learned sink logit per head (attn_sinks), a
// post-attention norm instead of ffn_norm, and a routed MoE with biased router and biased experts (no
// dense FFN, no shared expert). Sliding-window attention (window <arch>.attention.sliding_window) on
// every other block: the loader's load_swa_pattern(ml, 2) makes block i sliding when i % 2 == 0; the
// converter writes no pattern key. The checkpoint's experts are MXFP4 and the converter copies them
// as they are (expert_source_type: MXFP4).
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {"sliding_window",        "attention_bias",
                                         "rope_scaling",          "rope_scaling_factor",
                                         "rope_scaling_orig_ctx", "expert_source_type"};

std::optional<field_error> check(const model_entry& m) {
  if (m.sliding_window == 0)
    return field_error{"sliding_window", "arch gpt-oss needs 'sliding_window' (llama.cpp requires the key)"};
  if (m.tied_embeddings)
    return field_error{"tied_embeddings",
                       "arch gpt-oss has an output.weight; 'tied_embeddings' must be false"};
  return std::nullopt;
}

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd, D = m.head_dim, H = m.n_head;
  const std::uint64_t Q = H * D, KV = std::uint64_t{m.n_head_kv} * D;
  const std::uint64_t F = m.n_ff_exp, X = m.n_expert;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    t.blk(i, "attn_norm.weight", {E});
    t.blk(i, "post_attention_norm.weight", {E});
    add_qkv(t, i, E, Q, KV, m.attention_bias);
    t.blk(i, "attn_output.weight", {Q, E});
    t.blk(i, "attn_output.bias", {E});
    t.blk(i, "attn_sinks.weight", {H});
    t.blk(i, "ffn_gate_inp.weight", {E, X});
    t.blk(i, "ffn_gate_inp.bias", {X});
    add_experts(t, i, E, F, X);
    t.blk(i, "ffn_gate_exps.bias", {F, X});
    t.blk(i, "ffn_up_exps.bias", {F, X});
    t.blk(i, "ffn_down_exps.bias", {E, X});
  }
}

void metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv);
  add_rope_scaling_keys(m, kv);
  kv.u32("attention.sliding_window", m.sliding_window);
  kv.u32("expert_feed_forward_length", m.n_ff_exp);
}

}  // namespace

extern const arch_family k_family_gpt_oss;  // declared for the table in arch.cpp
const arch_family k_family_gpt_oss{"gpt-oss", true, k_fields, check, tensors, metadata};

}  // namespace agifarm::synth
