#include "synth/tiny.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "gguf/writer.hpp"
#include "synth/shape.hpp"

#ifndef AGIFARM_LLAMA_SRC
#define AGIFARM_LLAMA_SRC ""
#endif

namespace agifarm::synth {
namespace {

using gguf::tensor_def;

// IEEE half from float (round to nearest even), enough for random weights in [-1, 1].
std::uint16_t to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  std::uint32_t sign = (x >> 16) & 0x8000;
  int exp = static_cast<int>((x >> 23) & 0xFF) - 127 + 15;
  std::uint32_t mant = x & 0x7FFFFF;
  if (exp <= 0) return static_cast<std::uint16_t>(sign);  // flush tiny values to zero
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7C00);
  std::uint32_t h = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  if ((mant & 0x1FFF) > 0x1000 || ((mant & 0x1FFF) == 0x1000 && (h & 1))) ++h;
  return static_cast<std::uint16_t>(h);
}

struct rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f; }
};

// Fills a tensor with small random weights encoded in its type; norms get 1.0 so activations stay sane.
void fill_tensor(const tensor_def& def, std::span<std::byte> out, std::uint64_t seed) {
  rng r{seed * 0x9E3779B97F4A7C15ull + 0x1234567ull};
  bool is_norm = def.name.find("norm") != std::string::npos;
  std::uint64_t rows = 1;
  for (std::size_t i = 1; i < def.shape.size(); ++i) rows *= def.shape[i];
  const float scale = 0.5f / std::sqrt(static_cast<float>(def.shape[0]));
  auto* p = out.data();
  auto put16 = [&](std::uint16_t v) {
    std::memcpy(p, &v, 2);
    p += 2;
  };
  std::uint64_t n = def.shape[0] * rows;
  switch (def.type) {
    case 0:  // F32
      for (std::uint64_t i = 0; i < n; ++i) {
        float v = is_norm ? 1.0f : r.uniform() * scale;
        std::memcpy(p, &v, 4);
        p += 4;
      }
      break;
    case 1:  // F16
      for (std::uint64_t i = 0; i < n; ++i) put16(to_half(is_norm ? 1.0f : r.uniform() * scale));
      break;
    case 8:  // Q8_0: f16 scale + 32 int8
      for (std::uint64_t b = 0; b < n / 32; ++b) {
        put16(to_half(scale / 127.0f));
        for (int i = 0; i < 32; ++i)
          *p++ = static_cast<std::byte>(static_cast<std::int8_t>(r.next() % 255 - 127));
      }
      break;
    case 2:  // Q4_0: f16 scale + 16 bytes of nibbles
      for (std::uint64_t b = 0; b < n / 32; ++b) {
        put16(to_half(scale / 8.0f));
        for (int i = 0; i < 16; ++i) *p++ = static_cast<std::byte>(r.next() & 0xFF);
      }
      break;
    case 39:  // MXFP4: e8m0 scale (2^-8: values up to 6 * 2^-8 * 2) + 16 bytes of FP4 nibbles
      for (std::uint64_t b = 0; b < n / 32; ++b) {
        *p++ = static_cast<std::byte>(119);
        for (int i = 0; i < 16; ++i) *p++ = static_cast<std::byte>(r.next() & 0xFF);
      }
      break;
    default:
      break;  // not produced by write_tiny_model
  }
  // the delta net's A (qwen35moe ssm_a) is a decay: negative, so the state shrinks
  if (def.type == 0 && def.name.ends_with(".ssm_a")) {
    for (std::uint64_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, out.data() + 4 * i, 4);
      v = -0.5f - std::fabs(v);
      std::memcpy(out.data() + 4 * i, &v, 4);
    }
  }
}

// The catalogue-family tiny models (gpt-oss, qwen35moe): a model_entry of tiny dimensions laid out by
// its architecture family (synth/arch.hpp), as a shape file would be, then filled with weights.
model_entry tiny_entry(const tiny_params& p, std::uint32_t n_vocab) {
  model_entry m;
  m.id = m.name = p.name.empty() ? fmt::format("agifarm tiny {}", p.arch) : p.name;
  m.arch = p.arch;
  m.vocab = "qwen2";
  m.n_layer = p.n_layer;
  m.n_embd = p.n_embd;
  m.n_ff = p.n_ff;
  m.n_head = p.n_head;
  m.n_head_kv = p.n_head_kv;
  m.n_vocab = n_vocab;
  m.context_length = p.context_length;
  m.rope_theta = 1000000.0;
  m.n_expert = p.n_expert;
  m.n_expert_used = p.n_expert_used;
  m.n_ff_exp = p.n_ff_exp;
  if (p.arch == "gpt-oss") {
    m.head_dim = p.head_dim ? p.head_dim : 32;
    m.rms_eps = 1e-5;
    m.sliding_window = 128;
    m.attention_bias = true;
    m.expert_source_type = "MXFP4";
  } else {  // qwen35moe: one full-attention block every 2, rope over 64 dims (its sections 11+11+10)
    m.head_dim = p.head_dim ? p.head_dim : 64;
    m.partial_rotary_factor = 64.0 / m.head_dim;
    m.n_ff_shexp = p.n_ff_exp;
    m.linear_conv_kernel_dim = 4;
    m.linear_key_head_dim = m.linear_value_head_dim = 32;
    m.linear_num_key_heads = 2;
    m.linear_num_value_heads = 4;
    m.full_attention_interval = 2;
  }
  return m;
}

// Writes `in` with random weights (seed + tensor index) through a .partial file renamed into place.
result<tiny_result> write_filled(const gguf::writer_input& in, std::uint64_t seed, std::uint32_t n_vocab,
                                 const std::string& out_path) {
  if (auto d = std::filesystem::path(out_path).parent_path(); !d.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
  }
  const std::string tmp = out_path + ".partial";
  auto st = gguf::write_file(tmp, in, [&](std::size_t i, const tensor_def& def, std::span<std::byte> out) {
    fill_tensor(def, out, seed + i);
  });
  if (!st) return st.err();
  std::error_code ec;
  std::filesystem::rename(tmp, out_path, ec);
  if (ec) return make_error(fmt::format("{}: cannot rename into place: {}", out_path, ec.message()));
  tiny_result r;
  r.path = out_path;
  r.n_vocab = n_vocab;
  r.file_bytes = std::filesystem::file_size(out_path);
  for (const auto& td : in.tensors) {
    std::uint64_t n = 1;
    for (auto d : td.shape) n *= d;
    r.n_params += n;
  }
  return r;
}

result<tiny_result> write_family_tiny(const tiny_params& p, const std::string& vocab,
                                      const std::string& out_path) {
  auto tok = load_tokenizer(vocab);
  if (!tok) return tok.err();
  std::uint32_t n_vocab = 0;
  for (const auto& kv : *tok)
    if (kv.key == "tokenizer.ggml.tokens" && kv.val.as_array())
      n_vocab = static_cast<std::uint32_t>(kv.val.as_array()->count);
  if (n_vocab == 0) return make_error(fmt::format("{}: has no tokenizer.ggml.tokens", vocab), 2);
  const model_entry m = tiny_entry(p, n_vocab);
  if (p.arch == "qwen35moe" && (m.head_dim < 64 || m.head_dim % 64 != 0))
    return make_error(
        "synth tiny: qwen35moe needs --head-dim a multiple of 64 (its rope sections cover 64 dims)", 2);
  if (m.n_head % m.n_head_kv || m.n_expert == 0 || m.n_expert_used == 0 || m.n_expert_used > m.n_expert ||
      m.n_ff_exp == 0)
    return make_error("synth tiny: heads must be a multiple of kv heads and 0 < experts used <= experts", 2);
  for (std::uint32_t d : {m.n_embd, m.n_ff_exp})
    if (d % 32) return make_error(fmt::format("synth tiny: dimension {} is not a multiple of 32", d), 2);
  const auto mix = p.weight_type == "F32" ? quant_mix::f32 : quant_mix::f16;
  shape_options opt;
  opt.tokenizer = &*tok;
  auto in = make_shape(m, mix, opt);
  if (!in) return in.err();
  for (auto& kv : in->metadata)
    if (kv.key == "general.name") kv.val = gguf::make_string(m.name);
  return write_filled(*in, p.seed, n_vocab, out_path);
}

}  // namespace

std::string default_vocab_path() {
  std::vector<std::string> candidates;
  if (const char* e = std::getenv("AGIFARM_VOCAB")) candidates.emplace_back(e);
  if (!std::string_view(AGIFARM_LLAMA_SRC).empty())
    candidates.push_back(std::string(AGIFARM_LLAMA_SRC) + "/models/ggml-vocab-qwen2.gguf");
  if (const char* h = std::getenv("HOME"))
    candidates.push_back(std::string(h) +
                         "/.cache/agifarm/llama.cpp-node-llama-cpp-3.22.1/src/models/ggml-vocab-qwen2.gguf");
  for (const auto& c : candidates)
    if (std::filesystem::exists(c)) return c;
  return {};
}

result<tiny_result> write_tiny_model(const tiny_params& p, const std::string& out_path) {
  bool moe = p.arch == "qwen3moe";
  const bool family = p.arch == "gpt-oss" || p.arch == "qwen35moe";
  if (p.arch != "qwen3" && !moe && !family)
    return make_error(
        fmt::format("synth tiny: unknown --arch '{}' (qwen3, qwen3moe, gpt-oss or qwen35moe)", p.arch), 2);
  if (family) {
    if (p.weight_type != "F16" && p.weight_type != "F32")
      return make_error(fmt::format("synth tiny: --arch {} takes --type F16 or F32", p.arch), 2);
    if (p.n_layer == 0 || p.n_embd == 0 || p.n_head == 0 || p.n_head_kv == 0)
      return make_error("synth tiny: layers, embedding and heads must be > 0", 2);
    const std::string vocab = p.vocab_path.empty() ? default_vocab_path() : p.vocab_path;
    if (vocab.empty())
      return make_error(
          "synth tiny: no vocabulary GGUF found (llama.cpp's models/ggml-vocab-qwen2.gguf); "
          "run scripts/setup.sh or pass --vocab",
          2);
    return write_family_tiny(p, vocab, out_path);
  }
  const std::uint32_t head_dim = p.head_dim ? p.head_dim : 32;
  const gguf::type_info* wt = gguf::find_type(p.weight_type);
  if (!wt || (wt->id != 0 && wt->id != 1 && wt->id != 2 && wt->id != 8))
    return make_error(fmt::format("synth tiny: --type '{}' must be F32, F16, Q8_0 or Q4_0", p.weight_type),
                      2);
  if (p.n_layer == 0 || p.n_embd == 0 || p.n_head == 0 || p.n_head_kv == 0 || head_dim == 0 ||
      p.n_head % p.n_head_kv)
    return make_error(
        "synth tiny: layers, embedding, heads and head_dim must be > 0 and heads a multiple of kv heads", 2);
  if (moe && (p.n_expert == 0 || p.n_expert_used == 0 || p.n_expert_used > p.n_expert))
    return make_error("synth tiny: need 0 < experts used <= experts", 2);
  for (std::uint32_t d : {p.n_embd, p.n_head * head_dim, moe ? p.n_ff_exp : p.n_ff})
    if (d % wt->block_size)
      return make_error(fmt::format("synth tiny: dimension {} is not a multiple of {}'s block size {}", d,
                                    wt->name, wt->block_size),
                        2);

  std::string vocab = p.vocab_path.empty() ? default_vocab_path() : p.vocab_path;
  if (vocab.empty())
    return make_error(
        "synth tiny: no vocabulary GGUF found (llama.cpp's models/ggml-vocab-qwen2.gguf); "
        "run scripts/setup.sh or pass --vocab",
        2);
  gguf::read_options all;
  all.max_array_elements = UINT64_MAX;
  auto vf = gguf::read_file(vocab, all);
  if (!vf) return vf.err();

  gguf::writer_input in;
  const std::string a = p.arch;
  auto kv = [&](std::string k, gguf::value v) { in.metadata.push_back({std::move(k), std::move(v)}); };
  kv("general.architecture", gguf::make_string(a));
  kv("general.type", gguf::make_string("model"));
  kv("general.name", gguf::make_string(p.name.empty() ? fmt::format("agifarm tiny {}", a) : p.name));
  // LLAMA_FTYPE: 0 all F32, 1 mostly F16, 7 mostly Q8_0, 2 mostly Q4_0
  std::uint32_t ftype = wt->id == 0 ? 0 : wt->id == 1 ? 1 : wt->id == 8 ? 7 : 2;
  kv("general.file_type", gguf::make_u32(ftype));
  kv("general.quantization_version", gguf::make_u32(2));
  kv(a + ".block_count", gguf::make_u32(p.n_layer));
  kv(a + ".context_length", gguf::make_u32(p.context_length));
  kv(a + ".embedding_length", gguf::make_u32(p.n_embd));
  kv(a + ".feed_forward_length", gguf::make_u32(p.n_ff));
  kv(a + ".attention.head_count", gguf::make_u32(p.n_head));
  kv(a + ".attention.head_count_kv", gguf::make_u32(p.n_head_kv));
  kv(a + ".attention.key_length", gguf::make_u32(head_dim));
  kv(a + ".attention.value_length", gguf::make_u32(head_dim));
  kv(a + ".rope.freq_base", gguf::make_f32(1000000.0f));
  kv(a + ".attention.layer_norm_rms_epsilon", gguf::make_f32(1e-6f));
  if (moe) {
    kv(a + ".expert_count", gguf::make_u32(p.n_expert));
    kv(a + ".expert_used_count", gguf::make_u32(p.n_expert_used));
    kv(a + ".expert_feed_forward_length", gguf::make_u32(p.n_ff_exp));
  }
  std::uint64_t n_vocab = 0;
  for (const auto& m : vf->metadata) {
    if (!m.key.starts_with("tokenizer.")) continue;
    if (m.key == "tokenizer.ggml.tokens") n_vocab = m.val.as_array() ? m.val.as_array()->count : 0;
    in.metadata.push_back(m);
  }
  if (n_vocab == 0) return make_error(fmt::format("{}: has no tokenizer.ggml.tokens", vocab), 2);

  const std::uint32_t F32 = 0, W = wt->id;
  const std::uint64_t E = p.n_embd, Q = std::uint64_t{p.n_head} * head_dim,
                      KV = std::uint64_t{p.n_head_kv} * head_dim;
  auto t = [&](std::string n, std::vector<std::uint64_t> s, std::uint32_t ty) {
    in.tensors.push_back({std::move(n), std::move(s), ty});
  };
  t("token_embd.weight", {E, n_vocab}, W);
  t("output_norm.weight", {E}, F32);
  t("output.weight", {E, n_vocab}, W);
  for (std::uint32_t i = 0; i < p.n_layer; ++i) {
    auto b = [&](const char* s) { return fmt::format("blk.{}.{}", i, s); };
    t(b("attn_norm.weight"), {E}, F32);
    t(b("attn_q.weight"), {E, Q}, W);
    t(b("attn_k.weight"), {E, KV}, W);
    t(b("attn_v.weight"), {E, KV}, W);
    t(b("attn_output.weight"), {Q, E}, W);
    t(b("attn_q_norm.weight"), {head_dim}, F32);
    t(b("attn_k_norm.weight"), {head_dim}, F32);
    t(b("ffn_norm.weight"), {E}, F32);
    if (moe) {
      t(b("ffn_gate_inp.weight"), {E, p.n_expert}, F32);
      t(b("ffn_gate_exps.weight"), {E, p.n_ff_exp, p.n_expert}, W);
      t(b("ffn_up_exps.weight"), {E, p.n_ff_exp, p.n_expert}, W);
      t(b("ffn_down_exps.weight"), {p.n_ff_exp, E, p.n_expert}, W);
    } else {
      t(b("ffn_gate.weight"), {E, p.n_ff}, W);
      t(b("ffn_up.weight"), {E, p.n_ff}, W);
      t(b("ffn_down.weight"), {p.n_ff, E}, W);
    }
  }
  return write_filled(in, p.seed, static_cast<std::uint32_t>(n_vocab), out_path);
}

}  // namespace agifarm::synth
