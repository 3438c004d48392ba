// Shape files: tensor layout per architecture (llama.cpp's LLM_TN names; ggml ne order, ne[0] is the
// row length), metadata as convert_hf_to_gguf.py writes it (conversion/base.py set_gguf_parameters,
// qwen.py, llama.py) plus what llama-quantize adds, and the tokenizer of llama.cpp's vocab GGUFs.
#include "synth/shape.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::uint32_t k_token_type_user_defined = 4;  // what llama.cpp's vocab files give [PAD] tokens
constexpr std::uint32_t k_quantization_version = 2;     // GGML_QNT_VERSION

}  // namespace

quant_model quant_model_of(const model_entry& m) {
  // what llama-quantize reads from the file: block_count (with next-token-prediction blocks) and the
  // head counts as written (MLA writes one KV head)
  quant_model q{m.arch, m.block_count(), m.n_head, m.n_head_kv, m.n_expert};
  if (const auto* f = find_arch(m.arch); f && f->metadata) {
    key_list kv(m);
    f->metadata(m, kv);
    for (const auto& k : kv.take())
      if (k.key == m.arch + ".attention.head_count_kv")
        q.n_head_kv = static_cast<std::uint32_t>(*k.val.as_uint());
  }
  return q;
}

std::vector<quant_tensor> source_tensors(const model_entry& m) {
  tensor_list t(m);
  if (const auto* f = find_arch(m.arch); f && f->tensors) f->tensors(m, t);
  auto out = t.take();
  std::stable_sort(out.begin(), out.end(), [](const quant_tensor& a, const quant_tensor& b) {
    return llama_name_less(a.name, b.name);
  });
  return out;
}

result<std::vector<gguf::tensor_def>> shape_tensors(const model_entry& m, quant_mix mix) {
  const auto src = source_tensors(m);
  auto types = choose_types(quant_model_of(m), mix, src);
  if (!types) return make_error(fmt::format("model {}: {}", m.id, types.err().message), 2);
  std::vector<gguf::tensor_def> out;
  out.reserve(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    // A tensor the checkpoint already holds quantized (gpt-oss's MXFP4 experts) keeps its type: the
    // converter copies it for every --outtype, and llama-quantize refuses to requantize it (without
    // --allow-requantize), which is how the published K-quant files of such models keep it too.
    const std::uint32_t s = src[i].source_type;
    const bool prequantized = s != k_f32 && s != k_f16 && s != k_bf16;
    out.push_back({src[i].name, src[i].shape, prequantized ? s : (*types)[i]});
  }
  return out;
}

std::vector<gguf::key_value> shape_metadata(const model_entry& m, quant_mix mix) {
  std::vector<gguf::key_value> md;
  auto kv = [&](std::string k, gguf::value v) { md.push_back({std::move(k), std::move(v)}); };
  kv("general.architecture", gguf::make_string(m.arch));
  kv("general.type", gguf::make_string("model"));
  kv("general.name", gguf::make_string(m.name));
  if (!m.size_label.empty()) kv("general.size_label", gguf::make_string(m.size_label));
  if (const auto* f = find_arch(m.arch); f && f->metadata) {
    key_list keys(m);
    f->metadata(m, keys);
    for (auto& k : keys.take()) md.push_back(std::move(k));
  }
  kv("general.file_type", gguf::make_u32(info(mix).llama_ftype));
  kv("general.quantization_version", gguf::make_u32(k_quantization_version));
  return md;
}

std::string vocab_path_for(std::string_view vocab) {
  const std::string file = fmt::format("models/ggml-vocab-{}.gguf", vocab);
  std::vector<std::string> roots;
  if (const char* e = std::getenv("AGIFARM_LLAMA_SRC"); e && *e) roots.emplace_back(e);
#ifdef AGIFARM_LLAMA_SRC
  if (!std::string_view(AGIFARM_LLAMA_SRC).empty()) roots.emplace_back(AGIFARM_LLAMA_SRC);
#endif
  if (const char* h = std::getenv("HOME"); h && *h)
    roots.push_back(std::string(h) + "/.cache/agifarm/llama.cpp-node-llama-cpp-3.22.1/src");
  for (const auto& r : roots) {
    std::error_code ec;
    std::string p = r + "/" + file;
    if (std::filesystem::is_regular_file(p, ec)) return p;
  }
  return {};
}

result<std::vector<gguf::key_value>> load_tokenizer(const std::string& vocab_path) {
  gguf::read_options all;
  all.max_array_elements = UINT64_MAX;
  auto vf = gguf::read_file(vocab_path, all);
  if (!vf) return vf.err();
  std::vector<gguf::key_value> out;
  for (auto& kv : vf->metadata)
    if (kv.key.starts_with("tokenizer.")) out.push_back(std::move(kv));
  return out;
}

result<gguf::writer_input> make_shape(const model_entry& m, quant_mix mix, const shape_options& opt) {
  auto tensors = shape_tensors(m, mix);
  if (!tensors) return tensors.err();
  std::string vocab = "tokenizer";
  std::optional<result<std::vector<gguf::key_value>>> loaded;
  const std::vector<gguf::key_value>* tok = opt.tokenizer;
  if (!tok) {
    vocab = opt.vocab_path.empty() ? vocab_path_for(m.vocab) : opt.vocab_path;
    if (vocab.empty())
      return make_error(
          fmt::format("model {}: no tokenizer GGUF models/ggml-vocab-{}.gguf found in the llama.cpp "
                      "source (run scripts/setup.sh or set AGIFARM_LLAMA_SRC)",
                      m.id, m.vocab),
          2);
    loaded.emplace(load_tokenizer(vocab));
    if (!*loaded) return loaded->err();
    tok = &loaded->value();
  }

  gguf::writer_input in;
  in.metadata = shape_metadata(m, mix);
  bool have_tokens = false;
  for (const auto& kv : *tok) {
    if (!kv.key.starts_with("tokenizer.")) continue;
    if (kv.key == "tokenizer.ggml.tokens" || kv.key == "tokenizer.ggml.token_type" ||
        kv.key == "tokenizer.ggml.scores") {
      const auto* arr = kv.val.as_array();
      if (!arr || !arr->materialized)
        return make_error(fmt::format("{}: {} is not an array", vocab, kv.key), 2);
      if (arr->count > m.n_vocab)
        return make_error(fmt::format("model {}: {} holds {} tokens, more than n_vocab {}", m.id, vocab,
                                      arr->count, m.n_vocab),
                          2);
      std::vector<gguf::value> items;
      items.reserve(m.n_vocab);
      items.assign(arr->items.begin(), arr->items.end());
      for (std::uint64_t i = arr->count; i < m.n_vocab; ++i) {
        if (kv.key == "tokenizer.ggml.tokens")
          items.push_back(gguf::make_string(fmt::format("[PAD{}]", i)));
        else if (kv.key == "tokenizer.ggml.token_type")
          items.push_back(gguf::make_i32(k_token_type_user_defined));
        else
          items.push_back(gguf::make_f32(-1000.0f));
      }
      in.metadata.push_back({kv.key, gguf::make_array(arr->element_type, std::move(items))});
      if (kv.key == "tokenizer.ggml.tokens") have_tokens = true;
    } else {
      in.metadata.push_back(kv);
    }
  }
  if (!have_tokens) return make_error(fmt::format("{}: has no tokenizer.ggml.tokens", vocab), 2);
  in.tensors = std::move(*tensors);
  return in;
}

result<shape_file_info> write_shape_file(const model_entry& m, quant_mix mix, const std::string& path,
                                         const shape_options& opt) {
  auto in = make_shape(m, mix, opt);
  if (!in) return in.err();
  std::error_code ec;
  if (auto d = std::filesystem::path(path).parent_path(); !d.empty())
    std::filesystem::create_directories(d, ec);
  const std::string tmp = path + ".partial";
  if (auto st = gguf::write_file(tmp, *in); !st) return st.err();
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return make_error(fmt::format("{}: cannot rename into place: {}", path, ec.message()));
  }
  shape_file_info r;
  r.path = path;
  r.n_tensors = in->tensors.size();
  for (const auto& t : in->tensors) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= d;
    r.n_params += n;
    auto b = gguf::tensor_bytes(t.type, t.shape);
    if (b) r.tensor_bytes += *b;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    r.file_bytes = static_cast<std::uint64_t>(st.st_size);
    r.disk_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return r;
}

}  // namespace agifarm::synth
