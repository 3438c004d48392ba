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
  std::string id;          // e.g. "qwen3-30b-a3b" (what --model takes)
  std::string name;        // general.name, e.g. "Qwen3-30B-A3B"
  std::string arch;        // llama.cpp architecture: qwen3 | qwen3moe | llama
  std::string vocab;       // tokenizer: models/ggml-vocab-<vocab>.gguf of llama.cpp
  std::string size_label;  // general.size_label, e.g. "30B-A3B"
  std::uint32_t n_layer = 0;
  std::uint32_t n_embd = 0;
  std::uint32_t n_ff = 0;
  std::uint32_t n_head = 0;
  std::uint32_t n_head_kv = 0;
  std::uint32_t head_dim = 0;  // key and value length per head
  std::uint32_t n_vocab = 0;
  std::uint32_t context_length = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-6;
  std::uint32_t n_expert = 0;       // 0 for dense models
  std::uint32_t n_expert_used = 0;
  std::uint32_t n_ff_exp = 0;       // feed-forward length of one expert
  bool tied_embeddings = false;     // true: no output.weight, token_embd is reused
  bool qk_norm = false;             // attn_q_norm / attn_k_norm tensors
  bool rope_freqs = false;          // a rope_freqs.weight tensor (llama3 rope scaling)
  std::string source;               // where the values come from
  int line = 0;                     // where the entry starts in the catalogue (1-based)

  bool is_moe() const { return n_expert > 0; }
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
