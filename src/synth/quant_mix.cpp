// Port of llama.cpp src/llama-quant.cpp (node-llama-cpp 3.22.1's llama.cpp): tensor_get_category,
// tensor_allows_quantization, tensor_type_fallback, llama_tensor_get_type_impl and
// llama_tensor_get_type, restricted to the mixes of all_quant_mixes(), no imatrix, no overrides.
// Branches keep llama.cpp's order so the two can be read side by side. The differential tests
// (tests/synth/shape_quant_llama_test.cpp: llama.cpp's own choice for every catalogue model and mix;
// tests/synth/shape_llama_test.cpp: the real llama-quantize on small models) hold it to the
// original.
#include "synth/quant_mix.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "gguf/gguf.hpp"

namespace agifarm::synth {
namespace {

// LLAMA_FTYPE_* values of include/llama.h.
const std::vector<quant_mix_info> k_mixes = {
    {quant_mix::f32, "F32", 0, k_f32},         {quant_mix::f16, "F16", 1, k_f16},
    {quant_mix::bf16, "BF16", 32, k_bf16},     {quant_mix::q8_0, "Q8_0", 7, k_q8_0},
    {quant_mix::q6_k, "Q6_K", 18, k_q6_k},     {quant_mix::q5_k_m, "Q5_K_M", 17, k_q5_k},
    {quant_mix::q5_k_s, "Q5_K_S", 16, k_q5_k}, {quant_mix::q5_1, "Q5_1", 9, k_q5_1},
    {quant_mix::q5_0, "Q5_0", 8, k_q5_0},      {quant_mix::q4_k_m, "Q4_K_M", 15, k_q4_k},
    {quant_mix::q4_k_s, "Q4_K_S", 14, k_q4_k}, {quant_mix::q4_1, "Q4_1", 3, k_q4_1},
    {quant_mix::q4_0, "Q4_0", 2, k_q4_0},      {quant_mix::q3_k_l, "Q3_K_L", 13, k_q3_k},
    {quant_mix::q3_k_m, "Q3_K_M", 12, k_q3_k}, {quant_mix::q3_k_s, "Q3_K_S", 11, k_q3_k},
    {quant_mix::q2_k, "Q2_K", 10, k_q2_k},     {quant_mix::mxfp4_moe, "MXFP4_MOE", 38, k_mxfp4},
};

enum class category {
  token_embd,
  attention_q,
  attention_v,
  attention_k,
  attention_qkv,
  attention_kv_b,
  attention_output,
  ffn_up,
  ffn_gate,
  ffn_down,
  output,
  other
};

bool has(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

category get_category(std::string_view name) {
  if (name == "output.weight") return category::output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return category::token_embd;
  if (has(name, "attn_qkv.weight")) return category::attention_qkv;
  if (has(name, "attn_kv_b.weight")) return category::attention_kv_b;
  if (has(name, "attn_v.weight")) return category::attention_v;
  if (has(name, "attn_k.weight")) return category::attention_k;
  if (has(name, "attn_q.weight")) return category::attention_q;
  if (has(name, "attn_output.weight")) return category::attention_output;
  if (has(name, "ffn_up")) return category::ffn_up;
  if (has(name, "ffn_gate")) return category::ffn_gate;
  if (has(name, "ffn_down")) return category::ffn_down;
  return category::other;
}

bool is_attn_v(category c) {
  return c == category::attention_v || c == category::attention_qkv || c == category::attention_kv_b;
}

bool is_quantized(std::uint32_t type) {
  return type != k_f32 && type != k_f16 && type != k_bf16 && type != 24 && type != 25 && type != 26 &&
         type != 27 && type != 28;  // I8, I16, I32, I64, F64
}

std::uint64_t block_size(std::uint32_t type) {
  const auto* t = gguf::find_type(type);
  return t ? t->block_size : 1;
}

// "blk.N." prefix, as sscanf(name, "blk.%d.") reads it; -1 when absent.
int layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  std::size_t i = 4;
  long v = 0;
  bool any = false;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])) && v < 100000000) {
    v = v * 10 + (name[i] - '0');
    ++i;
    any = true;
  }
  if (!any || i >= name.size() || name[i] != '.') return -1;
  return static_cast<int>(v);
}

struct state {
  int n_attention_wv = 0, n_ffn_down = 0, n_ffn_gate = 0, n_ffn_up = 0;
  int i_attention_wv = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
  bool has_tied_embeddings = true;
};

std::uint32_t fallback(std::uint64_t ncols, std::uint32_t target) {
  if (ncols % block_size(target) == 0) return target;
  std::uint32_t ret = target;
  switch (target) {
    case k_q2_k:
    case k_q3_k:
      ret = k_q4_0;
      break;
    case k_q4_k:
      ret = k_q5_0;
      break;
    case k_q5_k:
      ret = k_q5_1;
      break;
    case k_q6_k:
      ret = k_q8_0;
      break;
    default:
      ret = target;
      break;  // 32-block types: nothing smaller, F16 below
  }
  if (ncols % block_size(ret) != 0) ret = k_f16;
  return ret;
}

std::uint32_t get_type_impl(state& qs, const quant_model& m, const quant_tensor& t, std::uint32_t new_type,
                            quant_mix mix, category cat) {
  using q = quant_mix;
  const std::string_view name = t.name;
  const bool falcon = m.arch == "falcon";
  const int n_expert = std::max<int>(1, static_cast<int>(m.n_expert));
  const std::uint32_t n_gqa = m.n_head_kv ? m.n_head / m.n_head_kv : 0;
  // llama.cpp's load_hparams (what llama-quantize runs): only LLM_TYPE_70B matters here.
  const bool type_70b = (m.arch == "llama" && m.n_layer == 80 && m.n_head != m.n_head_kv) ||
                        ((m.arch == "qwen2" || m.arch == "deci" || m.arch == "olmo") && m.n_layer == 80) ||
                        (m.arch == "jais2" && m.n_layer == 68);
  auto use_more_bits = [](int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
  };
  auto layer_info = [&](int i_layer, int n_layer) {
    if (n_expert > 1) {
      i_layer = layer_of(name);
      if (i_layer < 0 || i_layer >= n_layer)
        throw std::runtime_error("tensor " + std::string(name) + ": no block index in [0, " +
                                 std::to_string(n_layer) + ") in its name (needed for a MoE model)");
    }
    return std::make_pair(i_layer, n_layer);
  };

  if (cat == category::output || (qs.has_tied_embeddings && cat == category::token_embd)) {
    const std::uint64_t nx = t.shape.empty() ? 0 : t.shape[0];
    if (mix == q::mxfp4_moe) {
      new_type = k_q8_0;
    } else if (falcon || nx % block_size(new_type) != 0) {
      new_type = k_q8_0;
    } else if (new_type != k_q8_0) {
      new_type = k_q6_k;
    }
  } else if (mix == q::mxfp4_moe) {
    // MoE tensors MXFP4, every other matrix Q8_0 (bailingmoe3's 3-D MLA projections are no experts)
    const bool bailing_expert =
        m.arch == "bailingmoe3" &&
        (cat == category::ffn_up || cat == category::ffn_gate || cat == category::ffn_down);
    const bool three_d = t.shape.size() > 2 && t.shape[2] > 1;
    new_type = three_d && (m.arch != "bailingmoe3" || bailing_expert) ? k_mxfp4 : k_q8_0;
  } else if (cat == category::token_embd) {
    // no change for the mixes ported here
  } else if (is_attn_v(cat)) {
    if (mix == q::q2_k) {
      new_type = n_gqa >= 4 ? k_q4_k : k_q3_k;
    } else if (mix == q::q3_k_m) {
      new_type = qs.i_attention_wv < 2 ? k_q5_k : k_q4_k;
    } else if (mix == q::q3_k_l) {
      new_type = k_q5_k;
    } else if ((mix == q::q4_k_m || mix == q::q5_k_m) &&
               use_more_bits(qs.i_attention_wv, qs.n_attention_wv)) {
      new_type = k_q6_k;
    } else if (mix == q::q4_k_s && qs.i_attention_wv < 4) {
      new_type = k_q5_k;
    }
    if (type_70b) {
      if (new_type == k_q3_k || new_type == k_q4_k) new_type = k_q5_k;
    }
    if (m.n_expert == 8) new_type = k_q8_0;
    ++qs.i_attention_wv;
  } else if (cat == category::attention_k) {
    if (m.n_expert == 8) new_type = k_q8_0;
  } else if (cat == category::attention_q) {
    // IQ3 mixes only
  } else if (cat == category::ffn_down) {
    auto [i_layer, n_layer] = layer_info(qs.i_ffn_down, qs.n_ffn_down);
    if (mix == q::q2_k) {
      new_type = k_q3_k;
    } else if (mix == q::q3_k_m) {
      new_type = i_layer < n_layer / 16                       ? k_q5_k
                 : !falcon || use_more_bits(i_layer, n_layer) ? k_q4_k
                                                              : k_q3_k;
    } else if (mix == q::q3_k_l) {
      new_type = falcon ? k_q4_k : k_q5_k;
    } else if (mix == q::q4_k_m) {
      if (falcon) {
        new_type = i_layer < n_layer / 16 ? k_q6_k : use_more_bits(i_layer, n_layer) ? k_q5_k : k_q4_k;
      } else if (use_more_bits(i_layer, n_layer)) {
        new_type = k_q6_k;
      }
    } else if (mix == q::q5_k_m && use_more_bits(i_layer, n_layer)) {
      new_type = k_q6_k;
    } else if (mix == q::q4_k_s && !falcon && i_layer < n_layer / 8) {
      new_type = k_q5_k;
    }
    ++qs.i_ffn_down;
  } else if (cat == category::attention_output) {
    if (!falcon) {
      if (m.n_expert == 8) {
        if (mix == q::q2_k || mix == q::q3_k_s || mix == q::q3_k_m || mix == q::q4_k_s || mix == q::q4_k_m)
          new_type = k_q5_k;
      } else {
        if (mix == q::q2_k)
          new_type = k_q3_k;
        else if (mix == q::q3_k_m)
          new_type = k_q4_k;
        else if (mix == q::q3_k_l)
          new_type = k_q5_k;
      }
    } else if (mix == q::q3_k_l) {
      new_type = k_q4_k;
    }
  } else if (cat == category::attention_qkv) {
    // unreachable: attn_qkv is an attn_v-like category above, as in llama.cpp
  } else if (cat == category::ffn_gate) {
    (void)layer_info(qs.i_ffn_gate, qs.n_ffn_gate);
    ++qs.i_ffn_gate;
  } else if (cat == category::ffn_up) {
    (void)layer_info(qs.i_ffn_up, qs.n_ffn_up);
    ++qs.i_ffn_up;
  }
  return new_type;
}

}  // namespace

const std::vector<quant_mix_info>& all_quant_mixes() { return k_mixes; }

const quant_mix_info& info(quant_mix m) {
  for (const auto& i : k_mixes)
    if (i.mix == m) return i;
  return k_mixes.front();
}

std::string_view to_string(quant_mix m) { return info(m).name; }

std::optional<quant_mix> parse_quant_mix(std::string_view name) {
  for (const auto& i : k_mixes) {
    if (i.name.size() == name.size() &&
        std::equal(name.begin(), name.end(), i.name.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) == std::toupper(static_cast<unsigned char>(b));
        }))
      return i.mix;
  }
  return std::nullopt;
}

bool allows_quantization(std::string_view name, std::size_t n_dims) {
  if (n_dims < 2) return false;
  bool quantize = name.size() >= 6 && name.substr(name.size() - 6) == "weight";
  quantize &= !has(name, "_norm.weight");
  quantize &= !has(name, "ffn_gate_inp.weight");
  quantize &= !has(name, "ffn_gate_tid2eid.weight");
  quantize &= !has(name, "altup") && !has(name, "laurel");
  quantize &= !has(name, "per_layer_model_proj");
  quantize &= name != "position_embd.weight" && name != "token_types.weight";
  quantize &= !has(name, "ssm_conv1d") && !has(name, "shortconv.conv.weight");
  quantize &= !has(name, "indexer.k_proj.weight") && !has(name, "indexer.q_proj.weight");
  for (std::string_view rwkv :
       {"time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight"})
    quantize &= !has(name, rwkv);
  quantize &= !has(name, "attn_rel_b.weight");
  for (std::string_view mm : {".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
                              ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"})
    quantize &= !has(name, mm);
  return quantize;
}

bool llama_name_less(std::string_view a, std::string_view b) {
  const int la = layer_of(a), lb = layer_of(b);
  if (la != lb) return la < lb;
  return a < b;
}

result<std::vector<std::uint32_t>> choose_types(const quant_model& model, quant_mix mix,
                                                std::span<const quant_tensor> tensors) {
  state qs;
  for (const auto& t : tensors) {
    const category c = get_category(t.name);
    if (is_attn_v(c)) ++qs.n_attention_wv;
    if (c == category::output) qs.has_tied_embeddings = false;
  }
  qs.n_ffn_down = qs.n_ffn_gate = qs.n_ffn_up = static_cast<int>(model.n_layer);

  const std::uint32_t default_type = info(mix).default_type;
  std::vector<std::uint32_t> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (!allows_quantization(t.name, t.shape.size())) {
      out.push_back(t.source_type);
      continue;
    }
    std::uint32_t new_type = default_type;
    if (is_quantized(default_type)) {
      try {
        new_type = get_type_impl(qs, model, t, new_type, mix, get_category(t.name));
      } catch (const std::runtime_error& e) {
        return make_error(e.what(), 2);
      }
      new_type = fallback(t.shape.empty() ? 0 : t.shape[0], new_type);
    }
    out.push_back(new_type);
  }
  return out;
}

}  // namespace agifarm::synth
