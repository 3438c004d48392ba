// shape: header-only "shape" GGUF files of real models. The tensor names, shapes and ggml types are
// exactly those of the file convert_hf_to_gguf.py + llama-quantize would produce for the catalogue
// entry (data/models.yaml) and mix; the metadata carries the keys llama.cpp reads for the
// architecture and a real tokenizer (copied from llama.cpp's models/ggml-vocab-<vocab>.gguf, padded to
// n_vocab with "[PAD{i}]" tokens as the converter does). The data section is a hole: a 130 GB model
// takes a few MB of disk, and llama.cpp's tools that only read headers (llama-fit-params) accept it.
//
// Contract: pure functions of their inputs apart from reading the vocabulary file and writing the
// output file; thread-safe. Errors name the model and the file (exit code 2 for bad input).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "gguf/writer.hpp"
#include "synth/quant_mix.hpp"
#include "synth/shape_catalogue.hpp"

namespace agifarm::synth {

// The model's tensors as the converter writes them at F16 (norms, 1-D tensors, biases and routers F32,
// other matrices F16, experts in the checkpoint's own type when the entry names one), in the order
// llama-quantize writes them (llama_name_less). The layout per architecture is in synth/arch.hpp.
std::vector<quant_tensor> source_tensors(const model_entry& m);
// What llama.cpp's quantizer knows of the model (block_count and the head counts as written).
quant_model quant_model_of(const model_entry& m);
// Names, shapes and types of every tensor for `mix`: the quantizer's choice (choose_types), except
// that tensors the checkpoint already holds quantized (source type not F32/F16/BF16, e.g. gpt-oss's
// MXFP4 experts) keep their type in every mix.
result<std::vector<gguf::tensor_def>> shape_tensors(const model_entry& m, quant_mix mix);
// The metadata keys the converter and llama-quantize write for the architecture, without tokenizer.*.
std::vector<gguf::key_value> shape_metadata(const model_entry& m, quant_mix mix);

struct shape_options {
  std::string vocab_path;  // tokenizer GGUF; default vocab_path_for(m.vocab)
  // Pre-loaded tokenizer.* keys (load_tokenizer), to write many shapes without re-reading the vocab
  // file; not owned, must outlive the call. Overrides vocab_path.
  const std::vector<gguf::key_value>* tokenizer = nullptr;
};
// The tokenizer.* keys of a vocabulary GGUF, with every array materialized.
result<std::vector<gguf::key_value>> load_tokenizer(const std::string& vocab_path);
// llama.cpp's models/ggml-vocab-<vocab>.gguf: $AGIFARM_LLAMA_SRC, the compiled-in source tree, then the
// cache. "" when none exists.
std::string vocab_path_for(std::string_view vocab);

// Everything the GGUF writer needs: metadata (with tokenizer) and tensor definitions.
result<gguf::writer_input> make_shape(const model_entry& m, quant_mix mix, const shape_options& opt = {});

struct shape_file_info {
  std::string path;
  std::uint64_t file_bytes = 0;    // apparent size (header + data)
  std::uint64_t disk_bytes = 0;    // blocks really allocated
  std::uint64_t tensor_bytes = 0;  // data section without alignment padding
  std::uint64_t n_params = 0;
  std::size_t n_tensors = 0;
};
// make_shape + a sparse write to `path` (replaced atomically).
result<shape_file_info> write_shape_file(const model_entry& m, quant_mix mix, const std::string& path,
                                         const shape_options& opt = {});

}  // namespace agifarm::synth
