// gemma3 (Gemma 3 text models): llama.cpp src/models/gemma3.cpp; converter conversion/gemma.py
// (Gemma3Model).
//
// Every block: q/k/v/o without biases, q/k norms, a norm after attention (post_attention_norm) and
// after the FFN (post_ffw_norm) besides the pre-norms; dense GELU FFN. The embeddings are tied. With a
// sliding window the loader's load_swa_pattern(ml, 6) makes 5 of every 6 blocks sliding (block i slides
// when i % 6 < 5) — the converter writes no pattern key — and rope.freq_base_swa is the local layers'
// rope base. The converter trims token_embd to the tokenizer's 262144 entries (config vocab_size 262208).
#include <string_view>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::string_view k_fields[] = {"tied_embeddings", "sliding_window",      "rope_theta_swa",
                                         "rope_scaling",    "rope_scaling_factor", "rope_scaling_orig_ctx"};

void tensors(const model_entry& m, tensor_list& t) {
  const std::uint64_t E = m.n_embd, D = m.head_dim;
  const std::uint64_t Q = std::uint64_t{m.n_head} * D, KV = std::uint64_t{m.n_head_kv} * D;
  add_embeddings(m, t);
  for (std::uint32_t i = 0; i < m.n_layer; ++i) {
    t.blk(i, "attn_norm.weight", {E});
    add_qkv(t, i, E, Q, KV, false);
    t.blk(i, "attn_output.weight", {Q, E});
    t.blk(i, "post_attention_norm.weight", {E});
    t.blk(i, "attn_q_norm.weight", {D});
    t.blk(i, "attn_k_norm.weight", {D});
    t.blk(i, "ffn_norm.weight", {E});
    add_dense_ffn(t, i, E, m.n_ff);
    t.blk(i, "post_ffw_norm.weight", {E});
  }
}

void metadata(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv);
  add_rope_scaling_keys(m, kv);
  if (m.rope_theta_swa > 0) kv.f32("rope.freq_base_swa", m.rope_theta_swa);
  if (m.sliding_window) kv.u32("attention.sliding_window", m.sliding_window);
}

}  // namespace

extern const arch_family k_family_gemma3;  // declared for the table in arch.cpp
const arch_family k_family_gemma3{"gemma3", false, k_fields, nullptr, tensors, metadata};

}  // namespace agifarm::synth
