// The family table and the pieces the families share.
#include "synth/arch.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>

#include "gguf/writer.hpp"

namespace agifarm::synth {

// One per arch_<family>.cpp.
extern const arch_family k_family_qwen3;
extern const arch_family k_family_qwen3moe;
extern const arch_family k_family_llama;
extern const arch_family k_family_gpt_oss;
extern const arch_family k_family_qwen35moe;
extern const arch_family k_family_qwen35;
extern const arch_family k_family_qwen3next;
extern const arch_family k_family_deepseek2;
extern const arch_family k_family_gemma3;
extern const arch_family k_family_glm4moe;
extern const arch_family k_family_qwen2moe;
extern const arch_family k_family_qwen2;
extern const arch_family k_family_mistral3;

namespace {

const std::array<const arch_family*, 13> k_families = {
    &k_family_qwen3,   &k_family_qwen3moe, &k_family_llama,     &k_family_gpt_oss,   &k_family_qwen35moe,
    &k_family_qwen35,  &k_family_mistral3, &k_family_qwen3next, &k_family_deepseek2, &k_family_gemma3,
    &k_family_glm4moe, &k_family_qwen2moe, &k_family_qwen2,
};

bool always_f32(std::string_view name, std::size_t n_dims) {
  if (n_dims <= 1 || name.ends_with("_norm.weight") || !name.ends_with(".weight")) return true;
  // conversion/base.py: MODEL_TENSOR.FFN_GATE_INP, FFN_GATE_INP_SHEXP, SSM_CONV1D (the others of its
  // list belong to architectures without a family here)
  for (std::string_view s : {"ffn_gate_inp.weight", "ffn_gate_inp_shexp.weight", "ssm_conv1d.weight"})
    if (name.ends_with(s)) return true;
  return false;
}

}  // namespace

void tensor_list::add(std::string name, std::vector<std::uint64_t> shape) {
  std::uint32_t type = k_f16;
  if (always_f32(name, shape.size())) {
    type = k_f32;
  } else if (!m_.expert_source_type.empty() && name.ends_with("_exps.weight")) {
    const auto* ti = gguf::find_type(m_.expert_source_type);  // validated by the catalogue parser
    if (ti) type = ti->id;
  }
  out_.push_back({std::move(name), std::move(shape), type});
}

void tensor_list::blk(std::uint32_t i, std::string_view suffix, std::vector<std::uint64_t> shape) {
  add(fmt::format("blk.{}.{}", i, suffix), std::move(shape));
}

void key_list::u32(std::string_view key, std::uint32_t v) {
  out_.push_back({prefix_ + std::string(key), gguf::make_u32(v)});
}
void key_list::f32(std::string_view key, double v) {
  out_.push_back({prefix_ + std::string(key), gguf::make_f32(static_cast<float>(v))});
}
void key_list::boolean(std::string_view key, bool v) {
  out_.push_back({prefix_ + std::string(key), gguf::make_bool(v)});
}
void key_list::str(std::string_view key, std::string v) {
  out_.push_back({prefix_ + std::string(key), gguf::make_string(std::move(v))});
}
void key_list::u32_array(std::string_view key, const std::vector<std::uint32_t>& v) {
  std::vector<gguf::value> items;
  items.reserve(v.size());
  for (auto x : v) items.push_back(gguf::make_u32(x));
  out_.push_back({prefix_ + std::string(key), gguf::make_array(gguf::value_type::uint32, std::move(items))});
}

std::span<const arch_family* const> arch_families() { return k_families; }

const arch_family* find_arch(std::string_view arch) {
  for (const auto* f : k_families)
    if (f->arch == arch) return f;
  return nullptr;
}

std::optional<field_error> check_expert_groups(const model_entry& m) {
  if (m.n_expert_groups >= m.n_expert)
    return field_error{"n_expert_groups", "'n_expert_groups' must be less than n_expert"};
  if (m.n_expert_groups > 1 &&
      (m.n_expert % m.n_expert_groups != 0 || m.n_group_used == 0 || m.n_group_used >= m.n_expert_groups))
    return field_error{"n_group_used",
                       "'n_expert_groups' must divide n_expert and 'n_group_used' be in "
                       "1..n_expert_groups-1 (llama.cpp asserts both)"};
  return std::nullopt;
}

void add_qkv(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t Q, std::uint64_t KV, bool bias) {
  t.blk(i, "attn_q.weight", {E, Q});
  t.blk(i, "attn_k.weight", {E, KV});
  t.blk(i, "attn_v.weight", {E, KV});
  if (bias) {
    t.blk(i, "attn_q.bias", {Q});
    t.blk(i, "attn_k.bias", {KV});
    t.blk(i, "attn_v.bias", {KV});
  }
}

void add_dense_ffn(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t F) {
  t.blk(i, "ffn_gate.weight", {E, F});
  t.blk(i, "ffn_up.weight", {E, F});
  t.blk(i, "ffn_down.weight", {F, E});
}

void add_experts(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t F, std::uint64_t X) {
  t.blk(i, "ffn_gate_exps.weight", {E, F, X});
  t.blk(i, "ffn_up_exps.weight", {E, F, X});
  t.blk(i, "ffn_down_exps.weight", {F, E, X});
}

void add_shared_expert(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t S) {
  t.blk(i, "ffn_gate_shexp.weight", {E, S});
  t.blk(i, "ffn_up_shexp.weight", {E, S});
  t.blk(i, "ffn_down_shexp.weight", {S, E});
}

void add_embeddings(const model_entry& m, tensor_list& t) {
  t.add("token_embd.weight", {m.n_embd, m.n_vocab});
  t.add("output_norm.weight", {m.n_embd});
  if (!m.tied_embeddings) t.add("output.weight", {m.n_embd, m.n_vocab});
}

void add_common_keys(const model_entry& m, key_list& kv, std::uint32_t head_count_kv,
                     std::uint32_t key_length, std::uint32_t value_length) {
  kv.u32("block_count", m.block_count());
  kv.u32("context_length", m.context_length);
  kv.u32("embedding_length", m.n_embd);
  if (m.n_ff) kv.u32("feed_forward_length", m.n_ff);  // written only when the config has intermediate_size
  kv.u32("attention.head_count", m.n_head);
  kv.u32("attention.head_count_kv", head_count_kv);
  kv.f32("rope.freq_base", m.rope_theta);
  kv.f32("attention.layer_norm_rms_epsilon", m.rms_eps);
  if (m.is_moe()) {
    kv.u32("expert_count", m.n_expert);
    kv.u32("expert_used_count", m.n_expert_used);
  }
  if (key_length) kv.u32("attention.key_length", key_length);
  if (value_length) kv.u32("attention.value_length", value_length);
}

void add_rope_scaling_keys(const model_entry& m, key_list& kv) {
  if (m.rope_scaling.empty()) return;
  kv.str("rope.scaling.type", m.rope_scaling);
  kv.f32("rope.scaling.factor", m.rope_scaling_factor);
  if (m.rope_scaling == "yarn") kv.u32("rope.scaling.original_context_length", m.rope_scaling_orig_ctx);
}

std::string needs_field(const model_entry& m, std::string_view field) {
  return fmt::format("arch {} needs '{}' > 0", m.arch, field);
}

std::uint32_t rotary_dims(const model_entry& m) {
  if (m.partial_rotary_factor <= 0) return m.head_dim;
  return static_cast<std::uint32_t>(static_cast<double>(m.head_dim) * m.partial_rotary_factor);
}

}  // namespace agifarm::synth
