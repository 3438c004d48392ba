// qwen3 (dense) and qwen3moe: llama.cpp src/models/qwen3.cpp and qwen3moe.cpp; converter
// conversion/qwen.py (Qwen3Model, Qwen3MoeModel). llama and mistral3 (Ministral 3: src/models/mistral3.cpp,
// conversion/mistral3.py Ministral3Model) share the dense block without q/k norms.
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {"tied_embeddings",     "qk_norm",
                                         "rope_freqs",          "rope_scaling",
                                         "rope_scaling_factor", "rope_scaling_orig_ctx"};

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd, D = m.head_dim;
  const std::uint64_t Q = std::uint64_t{m.n_head} * D, KV = std::uint64_t{m.n_head_kv} * D;
  add_embeddings(m, t);
  if (m.rope_freqs) t.add("rope_freqs.weight", {D / 2});
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    t.blk(i, "attn_norm.weight", {E});
    add_qkv(t, i, E, Q, KV, false);
    t.blk(i, "attn_output.weight", {Q, E});
    if (m.qk_norm) {
      t.blk(i, "attn_q_norm.weight", {D});
      t.blk(i, "attn_k_norm.weight", {D});
    }
    t.blk(i, "ffn_norm.weight", {E});
    if (m.is_moe()) {
      const std::uint64_t F = m.n_ff_exp, X = m.n_expert;
      t.blk(i, "ffn_gate_inp.weight", {E, X});
      add_experts(t, i, E, F, X);
    } else {
      add_dense_ffn(t, i, E, m.n_ff);
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

// conversion/mistral3.py: LlamaModel's keys and llama_4_scaling_beta as the
// attention temperature scale (the loader then needs the yarn original context).
constexpr std::string_view k_mistral3_fields[] = {"tied_embeddings", "rope_scaling", "rope_scaling_factor",
                                                  "rope_scaling_orig_ctx", "attn_temperature_scale"};

std::optional<field_error> mistral3_check(const model_entry& m) {
  if (m.attn_temperature_scale > 0 && m.rope_scaling_orig_ctx == 0)
    return field_error{"attn_temperature_scale",
                       "llama.cpp's mistral3 loader needs 'rope_scaling_orig_ctx' (yarn) with an attention "
                       "temperature scale"};
  return std::nullopt;
}

void mistral3_metadata(const model_entry& m, key_list& kv) {
  llama_metadata(m, kv);
  if (m.attn_temperature_scale > 0)
    kv.f32("attention.temperature_scale", static_cast<float>(m.attn_temperature_scale));
}

}  // namespace

extern const arch_family k_family_mistral3;  // declared for the table in arch.cpp
const arch_family k_family_mistral3{"mistral3",     false,   k_mistral3_fields,
                                    mistral3_check, tensors, mistral3_metadata};
extern const arch_family k_family_qwen3;  // declared for the table in arch.cpp
const arch_family k_family_qwen3{"qwen3", false, k_fields, nullptr, tensors, metadata};
extern const arch_family k_family_qwen3moe;  // declared for the table in arch.cpp
const arch_family k_family_qwen3moe{"qwen3moe", true, k_fields, nullptr, tensors, metadata};
// llama (src/models/llama.cpp, conversion/llama.py) has the same block as dense qwen3 without q/k norms.
extern const arch_family k_family_llama;  // declared for the table in arch.cpp
const arch_family k_family_llama{"llama", false, k_fields, nullptr, tensors, llama_metadata};

}  // namespace agifarm::synth
