// cache_layout: what llama.cpp keeps per layer between tokens (the "context" column of its memory
// breakdown), read from a model's GGUF keys the way llama.cpp's loader and llama_model::create_memory
// read them:
//  - attention layers hold K and V rows per cell; a sliding-window layer (gemma2/3, gpt-oss, cohere2,
//    ...) holds only its window of cells (llama_kv_cache_iswa); with MLA (deepseek2, kimi-k2) the
//    cache holds one compressed K row per cell (kv_lora_rank + rope dims) and no V;
//  - recurrent layers (qwen3next, qwen35, qwen35moe linear attention) hold a fixed f32 state per
//    sequence (conv + ssm), whatever the context;
//  - next-token-prediction layers (glm4moe's nextn) hold nothing in the main context.
// Sources: src/llama-model.cpp (load_hparams, create_memory), src/llama-hparams.cpp,
// src/llama-kv-cache.cpp, src/llama-kv-cache-iswa.cpp, src/llama-memory-recurrent.cpp and
// src/models/<arch>.cpp (load_arch_hparams) of the llama.cpp agifarm builds. Architectures are data
// (a table of SWA / hybrid defaults in cache_layout.cpp); an architecture outside the table still has
// its sliding-window, MLA and per-layer head-count keys honoured.
//
// Contract: pure functions of plain data; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.hpp"

namespace agifarm::plan {

struct layer_cache {
  bool kv = false;    // attention K (and V) cells
  bool swa = false;   // sliding-window layer: its cache holds the window, not the context
  bool has_v = true;  // false with MLA (V is read out of K)
  std::uint32_t n_embd_k = 0, n_embd_v = 0;  // elements of one K / V row (one cell)
  bool recurrent = false;                    // fixed-size state per sequence
  std::uint32_t n_embd_r = 0, n_embd_s = 0;  // f32 elements of the conv / ssm state of one sequence
};

struct cache_layout {
  std::vector<layer_cache> layers;  // one per block (block_count), next-token layers included
  std::uint32_t n_swa = 0;          // window of the sliding-window layers (0: none)
  bool mla = false;

  bool any_swa() const;
  bool any_recurrent() const;
  std::uint32_t n_embd_v_max() const;  // the V row every layer uses when V is transposed (no flash attention)
};

// The layout llama.cpp builds for `f` (its first part). Never fails: a file without attention keys
// gets an empty layout and the caller falls back to `uniform_cache_layout`.
cache_layout cache_layout_of(const gguf::file& f);

// Every layer a full-attention layer with the same K/V rows: the Qwen3 / Llama case, and the layout
// of a hand-made model_shape without one.
cache_layout uniform_cache_layout(std::uint64_t n_layer, std::uint64_t n_embd_k, std::uint64_t n_embd_v);

}  // namespace agifarm::plan
