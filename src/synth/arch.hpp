// arch: what a shape file of each llama.cpp architecture holds. One family per file
// (arch_<family>.cpp) behind one table (arch.cpp): the optional catalogue fields the architecture takes,
// the checks of an entry that llama.cpp's loader would otherwise refuse, the tensors
// convert_hf_to_gguf.py writes (names and ggml shapes exactly as the architecture's load_arch_tensors
// in llama.cpp's src/models/<arch>.cpp creates them) and the <arch>.* metadata keys the converter writes
// (the ones load_hparams / load_arch_hparams read).
//
// Adding an architecture is a new arch_<family>.cpp defining one `arch_family` and a line in the table.
// Contract: plain functions of a validated model_entry; thread-safe; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.hpp"
#include "synth/quant_mix.hpp"
#include "synth/shape_catalogue.hpp"

namespace agifarm::synth {

// A catalogue field that is wrong for the architecture, and why; the catalogue parser reports it at the
// field's file:line:column (or the entry's, when the field is absent).
struct field_error {
  std::string field;
  std::string message;
};

// The tensors of one model in the converter's types, collected in any order (source_tensors sorts).
class tensor_list {
 public:
  explicit tensor_list(const model_entry& m) : m_(m) {}
  // A tensor as convert_hf_to_gguf.py writes it (conversion/base.py prepare_tensors): F32 for 1-D
  // tensors, norms, names not ending in ".weight" (biases, ssm_a) and the router / shared-expert gate /
  // conv weights; the checkpoint's own type for expert matrices when the entry names one
  // (expert_source_type); F16 for every other matrix.
  void add(std::string name, std::vector<std::uint64_t> shape);
  // "blk.<i>.<suffix>"
  void blk(std::uint32_t i, std::string_view suffix, std::vector<std::uint64_t> shape);
  std::vector<quant_tensor> take() { return std::move(out_); }

 private:
  const model_entry& m_;
  std::vector<quant_tensor> out_;
};

// The <arch>.* metadata keys of one model, in the order they are added.
class key_list {
 public:
  explicit key_list(const model_entry& m) : prefix_(m.arch + ".") {}
  void u32(std::string_view key, std::uint32_t v);  // key without the "<arch>." prefix
  void f32(std::string_view key, double v);
  void boolean(std::string_view key, bool v);
  void str(std::string_view key, std::string v);
  void u32_array(std::string_view key, const std::vector<std::uint32_t>& v);
  std::vector<gguf::key_value> take() { return std::move(out_); }

 private:
  std::string prefix_;
  std::vector<gguf::key_value> out_;
};

struct arch_family {
  std::string_view arch;                     // llama.cpp's name (src/llama-arch.cpp LLM_ARCH_NAMES)
  bool moe = false;                          // n_expert, n_expert_used, n_ff_exp required (else forbidden)
  std::span<const std::string_view> fields;  // optional catalogue fields this architecture takes
  std::optional<field_error> (*check)(const model_entry&) = nullptr;  // beyond the common checks
  void (*tensors)(const model_entry&, tensor_list&) = nullptr;
  void (*metadata)(const model_entry&, key_list&) = nullptr;
  bool n_ff_optional = false;  // n_ff may be 0: the config has no intermediate_size (Qwen3.5 MoE)
};

// Every family, in the order `agifarm synth list` and error messages name them.
std::span<const arch_family* const> arch_families();
const arch_family* find_arch(std::string_view arch);  // nullptr when unknown

// ---- shared pieces of the families ----

// token_embd, output_norm and (unless tied) output.
void add_embeddings(const model_entry& m, tensor_list& t);
// Block i's layers that most families share, in the converters' order: E = n_embd.
// attn_q [E, Q], attn_k / attn_v [E, KV], then their biases when `bias`.
void add_qkv(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t Q, std::uint64_t KV, bool bias);
// A dense FFN of width F: ffn_gate, ffn_up, ffn_down.
void add_dense_ffn(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t F);
// X routed experts of width F: ffn_gate_exps, ffn_up_exps, ffn_down_exps (the router is the family's).
void add_experts(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t F, std::uint64_t X);
// A shared expert of width S: ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp.
void add_shared_expert(tensor_list& t, std::uint32_t i, std::uint64_t E, std::uint64_t S);
// Block-count .. value_length as conversion/base.py set_gguf_parameters writes them for every text
// model: block_count, context_length, embedding_length, feed_forward_length, head_count,
// head_count_kv, rope.freq_base, layer_norm_rms_epsilon, expert_count / expert_used_count (MoE),
// key_length / value_length (head_dim). `head_count_kv` and the head lengths are arguments because
// MLA writes other values than the config's; a head length of 0 is not written (a config without
// head_dim: llama.cpp then takes n_embd / n_head).
void add_common_keys(const model_entry& m, key_list& kv, std::uint32_t head_count_kv,
                     std::uint32_t key_length, std::uint32_t value_length);
inline void add_common_keys(const model_entry& m, key_list& kv) {
  add_common_keys(m, kv, m.n_head_kv, m.head_dim, m.head_dim);
}
// rope.scaling.* as base.py writes linear and yarn scaling (nothing when the entry has none).
void add_rope_scaling_keys(const model_entry& m, key_list& kv);
// rope.dimension_count = head_dim * partial_rotary_factor (what qwen3next / glm4moe write).
std::uint32_t rotary_dims(const model_entry& m);
// Grouped expert routing (deepseek2, glm4moe): fewer groups than experts; with several groups, groups
// that divide the experts and 1..groups-1 of them used (llama.cpp asserts both).
std::optional<field_error> check_expert_groups(const model_entry& m);
// "arch <arch> needs '<field>' > 0", for the families' checks.
std::string needs_field(const model_entry& m, std::string_view field);

}  // namespace agifarm::synth
