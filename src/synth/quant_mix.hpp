// quant_mix: which ggml type llama.cpp's quantizer gives each tensor of a model for a file type
// ("mix") such as Q4_K_M. This is a port of llama_tensor_get_type() and its helpers in
// llama.cpp's src/llama-quant.cpp (the version agifarm builds), without importance matrix, tensor
// overrides or --pure, for the mixes listed in all_quant_mixes(). The F32/F16/BF16/Q8_0 mixes are also
// what convert_hf_to_gguf.py writes for --outtype f32/f16/bf16/q8_0. MXFP4_MOE is llama.cpp's mix for
// gpt-oss as published: 3-D (expert) matrices MXFP4, every other matrix Q8_0.
//
// Contract: choose_types() is a pure function of its inputs; thread-safe. The tensors must be given in
// the order llama-quantize visits them (llama_model_loader::weights_map: by block index, non-block
// tensors first, then by name; see sort_like_llama()), because attn_v and ffn_down choices of dense
// models depend on a running counter. Source types are those the converter writes (F32 for norms, 1-D
// tensors and ffn_gate_inp; F16 for the other matrices).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::synth {

enum class quant_mix {
  f32,
  f16,
  bf16,
  q8_0,
  q6_k,
  q5_k_m,
  q5_k_s,
  q5_1,
  q5_0,
  q4_k_m,
  q4_k_s,
  q4_1,
  q4_0,
  q3_k_l,
  q3_k_m,
  q3_k_s,
  q2_k,
  mxfp4_moe,
};

struct quant_mix_info {
  quant_mix mix;
  std::string_view name;       // "Q4_K_M" as llama-quantize and file names spell it
  std::uint32_t llama_ftype;   // enum llama_ftype value written as general.file_type
  std::uint32_t default_type;  // ggml type of most weights (llama_ftype_get_default_type)
};
const std::vector<quant_mix_info>& all_quant_mixes();
const quant_mix_info& info(quant_mix m);
std::string_view to_string(quant_mix m);
std::optional<quant_mix> parse_quant_mix(std::string_view name);  // case-insensitive

// ggml type ids used here (stable file values).
inline constexpr std::uint32_t k_f32 = 0, k_f16 = 1, k_q4_0 = 2, k_q4_1 = 3, k_q5_0 = 6, k_q5_1 = 7,
                               k_q8_0 = 8, k_q2_k = 10, k_q3_k = 11, k_q4_k = 12, k_q5_k = 13, k_q6_k = 14,
                               k_bf16 = 30, k_mxfp4 = 39;

// What the quantizer needs to know about the model (the llama_quant_model_desc of llama-ext.h).
struct quant_model {
  std::string arch;  // llama.cpp architecture name
  std::uint32_t n_layer = 0;
  std::uint32_t n_head = 0;
  std::uint32_t n_head_kv = 0;
  std::uint32_t n_expert = 0;
};

struct quant_tensor {
  std::string name;
  std::vector<std::uint64_t> shape;  // ne[0..n)
  std::uint32_t source_type = k_f16;
};

// The ggml type of each tensor after quantizing to `mix`, in the order given. Fails (as llama-quantize
// does) when a MoE model has an FFN tensor whose name carries no valid block index.
result<std::vector<std::uint32_t>> choose_types(const quant_model& model, quant_mix mix,
                                                std::span<const quant_tensor> tensors);

// Would llama-quantize quantize this tensor at all (tensor_allows_quantization)?
bool allows_quantization(std::string_view name, std::size_t n_dims);

// Orders names as llama_model_loader::weights_map does (weight_name_comparer).
bool llama_name_less(std::string_view a, std::string_view b);

}  // namespace agifarm::synth
