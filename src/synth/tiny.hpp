// tiny: runnable random-weight models of the qwen3 (dense), qwen3moe, gpt-oss (MXFP4 experts, sinks,
// sliding window) and qwen35moe (gated delta net + attention, shared expert) architectures with a real
// tokenizer copied from a vocabulary GGUF (llama.cpp ships models/ggml-vocab-qwen2.gguf); the last two
// are laid out by their shape-file family (synth/arch.hpp). llama-server
// loads them and really runs inference (the text is gibberish). Dimensions are parameters so tests
// and the speed-model calibration can make models of any size. Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.hpp"

namespace agifarm::synth {

struct tiny_params {
  std::string arch = "qwen3";  // qwen3 | qwen3moe | gpt-oss | qwen35moe
  std::string name;            // general.name; default derived from arch
  std::uint32_t n_layer = 2;
  std::uint32_t n_embd = 128;
  std::uint32_t n_head = 4;
  std::uint32_t n_head_kv = 2;
  std::uint32_t head_dim = 0;  // 0: the arch's default (32; qwen35moe 64, its rope sections need 64)
  std::uint32_t n_ff = 384;
  std::uint32_t n_expert = 8;       // MoE archs only
  std::uint32_t n_expert_used = 2;  // MoE archs only
  std::uint32_t n_ff_exp = 64;      // MoE archs only (qwen35moe: also the shared expert)
  std::uint32_t context_length = 8192;
  std::string weight_type = "F16";  // F32 | F16 | Q8_0 | Q4_0 for the matrices (gpt-oss, qwen35moe: F32 |
                                    // F16; gpt-oss experts are MXFP4 as published); norms are always F32
  std::uint64_t seed = 42;
  std::string vocab_path;  // GGUF to copy tokenizer.* from; default: default_vocab_path()
};

// The qwen2 vocabulary GGUF of the llama.cpp source agifarm was built with, or "" if not found.
// Looks at $AGIFARM_VOCAB, then the compiled-in llama.cpp source tree, then the cache.
std::string default_vocab_path();

struct tiny_result {
  std::string path;
  std::uint64_t n_params = 0;
  std::uint64_t file_bytes = 0;
  std::uint32_t n_vocab = 0;
};

result<tiny_result> write_tiny_model(const tiny_params& p, const std::string& out_path);

}  // namespace agifarm::synth
