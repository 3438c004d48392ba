// shape_catalogue: the catalogue of real model architectures (data/models.yaml) that shape files are
// made from. Each entry holds the hyperparameters of one published model (its config.json values).
//
// Contract: parse_model_catalogue() takes the YAML text and a name used in messages; every error names
// `name:line:column` and the offending key (exit code 2). Entries are validated (positive sizes,
// heads divisible by KV heads, experts consistent, unique ids, known architectures) so code that
// builds tensors from them never sees an impossible model. Values are plain data; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::synth {

struct model_entry {
  std::string id;             // e.g. "qwen3-30b-a3b" (what --model takes)
  std::string name;           // general.name, e.g. "Qwen3-30B-A3B"
  std::string arch;           // llama.cpp architecture (known_shape_architectures())
  std::string vocab;          // tokenizer: models/ggml-vocab-<vocab>.gguf of llama.cpp
  std::string size_label;     // general.size_label, e.g. "30B-A3B"
  std::uint32_t n_layer = 0;  // transformer blocks (config num_hidden_layers), without n_layer_nextn
  std::uint32_t n_embd = 0;
  std::uint32_t n_ff = 0;
  std::uint32_t n_head = 0;
  std::uint32_t n_head_kv = 0;
  std::uint32_t head_dim = 0;  // key and value length per head
  std::uint32_t n_vocab = 0;
  std::uint32_t context_length = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-6;
  std::uint32_t n_expert = 0;  // 0 for dense models
  std::uint32_t n_expert_used = 0;
  std::uint32_t n_ff_exp = 0;    // feed-forward length of one expert
  bool tied_embeddings = false;  // true: no output.weight, token_embd is reused
  bool qk_norm = false;          // attn_q_norm / attn_k_norm tensors
  bool rope_freqs = false;       // a rope_freqs.weight tensor (llama3 rope scaling)

  // Optional fields (0 / false / "" when absent); which ones an architecture takes is listed in its
  // family (synth/arch.hpp) and data/models.yaml's header.
  std::uint32_t sliding_window = 0;  // tokens a sliding-window attention layer sees
  bool attention_bias = false;       // biases on the q/k/v projections
  double partial_rotary_factor = 0;  // rope.dimension_count = head_dim * this (0: whole head)
  double rope_theta_swa = 0;         // rope base of the sliding-window layers (0: not written)
  std::string rope_scaling;          // "" | linear | yarn
  double rope_scaling_factor = 0;
  std::uint32_t rope_scaling_orig_ctx = 0;  // yarn: original_max_position_embeddings
  std::uint32_t n_ff_shexp = 0;             // shared expert FFN length (qwen2moe, qwen3next, qwen35moe)
  std::uint32_t n_expert_shared = 0;        // shared experts of n_ff_exp each (deepseek2, glm4moe)
  std::uint32_t n_layer_dense_lead = 0;     // leading blocks with a dense FFN (first_k_dense_replace)
  std::uint32_t n_expert_groups = 0;        // n_group
  std::uint32_t n_group_used = 0;           // topk_group
  std::string expert_gating;                // "" | softmax | sigmoid (scoring_func)
  double expert_weights_scale = 0;          // routed_scaling_factor (0: not written)
  bool expert_weights_norm = false;         // norm_topk_prob
  bool expert_probs_bias = false;           // exp_probs_b.bias tensors (e_score_correction_bias)
  std::string expert_source_type;           // ggml type the checkpoint's experts already have ("MXFP4")
  std::uint32_t q_lora_rank = 0;            // MLA (deepseek2): 0 = no low-rank q projection
  std::uint32_t kv_lora_rank = 0;
  std::uint32_t qk_nope_head_dim = 0;
  std::uint32_t qk_rope_head_dim = 0;
  std::uint32_t v_head_dim = 0;
  std::uint32_t linear_conv_kernel_dim = 0;  // gated delta net layers (qwen3next, qwen35moe)
  std::uint32_t linear_key_head_dim = 0;
  std::uint32_t linear_value_head_dim = 0;
  std::uint32_t linear_num_key_heads = 0;
  std::uint32_t linear_num_value_heads = 0;
  std::uint32_t full_attention_interval = 0;  // every n-th block is full attention (0: the arch's default)
  std::uint32_t n_layer_nextn = 0;            // next-token-prediction (MTP) blocks after n_layer
  double attn_temperature_scale = 0;          // llama_4_scaling_beta (mistral3): q scaled per position

  std::string source;  // where the values come from
  int line = 0;        // where the entry starts in the catalogue (1-based)

  bool is_moe() const { return n_expert > 0; }
  std::uint32_t block_count() const { return n_layer + n_layer_nextn; }  // <arch>.block_count
};

// The architectures the shape builder knows how to lay out.
const std::vector<std::string_view>& known_shape_architectures();

// Parses and validates a catalogue. `name` (usually the path) prefixes every error message.
result<std::vector<model_entry>> parse_model_catalogue(std::string_view yaml_text, std::string_view name);
// Reads `path` and parses it.
result<std::vector<model_entry>> load_model_catalogue(const std::string& path);

// The catalogue shipped with agifarm: $AGIFARM_MODELS if set, else data/models.yaml of the source tree.
std::string default_catalogue_path();

// Finds an entry by id (case-insensitive); the error lists the known ids.
result<model_entry> find_model(const std::vector<model_entry>& catalogue, std::string_view id);

}  // namespace agifarm::synth
