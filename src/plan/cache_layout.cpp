#include "plan/cache_layout.hpp"

#include <algorithm>
#include <optional>
#include <string_view>

namespace agifarm::plan {

namespace {

// What an architecture's load_arch_hparams sets that the GGUF keys alone do not say.
struct arch_rules {
  std::string_view arch;
  std::uint32_t swa_pattern = 0;     // load_swa_pattern(ml, N): N-1 sliding layers then 1 full (0: no SWA)
  bool dense_first = false;          // ... or 1 full then N-1 sliding
  bool swa_needs_window_key = true;  // SWA only when <arch>.attention.sliding_window is in the file and > 0
  std::uint32_t default_window = 0;  // the window when the key is absent (swa_needs_window_key false)
  std::uint32_t full_attention_interval = 0;  // hybrid: every Nth layer attention, the rest recurrent
};

// src/models/<arch>.cpp of llama.cpp; the most-run architectures first.
constexpr arch_rules k_rules[] = {
    {"gpt-oss", 2, false, true, 0, 0},    {"gemma3", 6, false, true, 0, 0},
    {"gemma2", 2, false, false, 4096, 0}, {"cohere2", 4, false, true, 0, 0},
    {"cohere2moe", 4, true, true, 0, 0},  {"qwen35moe", 0, false, true, 0, 4},
    {"qwen35", 0, false, true, 0, 4},     {"qwen3next", 0, false, true, 0, 4},
};

const arch_rules* rules_for(std::string_view arch) {
  for (const auto& r : k_rules)
    if (r.arch == arch) return &r;
  return nullptr;
}

struct keys {
  const gguf::file& f;
  std::string prefix;
  const gguf::value* find(std::string_view suffix) const { return f.find(prefix + std::string(suffix)); }
  std::optional<std::uint64_t> uint(std::string_view suffix) const {
    const auto* v = find(suffix);
    if (!v) return std::nullopt;
    return v->as_uint();
  }
  // get_key_or_arr: a scalar for every layer, or one value per layer.
  std::vector<std::uint64_t> per_layer(std::string_view suffix, std::size_t n, std::uint64_t fallback) const {
    std::vector<std::uint64_t> out(n, fallback);
    const auto* v = find(suffix);
    if (!v) return out;
    if (const auto* a = v->as_array()) {
      if (!a->materialized) return out;
      for (std::size_t i = 0; i < n && i < a->items.size(); ++i)
        out[i] = a->items[i].as_uint().value_or(fallback);
      return out;
    }
    if (auto u = v->as_uint()) std::fill(out.begin(), out.end(), *u);
    return out;
  }
  // A per-layer flag array (sliding_window_pattern, recurrent_layers), if the file has one.
  std::optional<std::vector<bool>> flags(std::string_view suffix, std::size_t n) const {
    const auto* v = find(suffix);
    if (!v) return std::nullopt;
    const auto* a = v->as_array();
    if (!a || !a->materialized) return std::nullopt;
    std::vector<bool> out(n, false);
    for (std::size_t i = 0; i < n && i < a->items.size(); ++i)
      out[i] = a->items[i].as_number().value_or(0) != 0;
    return out;
  }
};

}  // namespace

bool cache_layout::any_swa() const {
  return std::any_of(layers.begin(), layers.end(), [](const layer_cache& l) { return l.kv && l.swa; });
}
bool cache_layout::any_recurrent() const {
  return std::any_of(layers.begin(), layers.end(), [](const layer_cache& l) { return l.recurrent; });
}
std::uint32_t cache_layout::n_embd_v_max() const {
  // llama_hparams::n_embd_v_gqa_max runs over every layer, attention or not.
  std::uint32_t m = 0;
  for (const auto& l : layers) m = std::max(m, l.n_embd_v);
  return m;
}

cache_layout uniform_cache_layout(std::uint64_t n_layer, std::uint64_t n_embd_k, std::uint64_t n_embd_v) {
  cache_layout c;
  layer_cache l;
  l.kv = true;
  l.n_embd_k = static_cast<std::uint32_t>(n_embd_k);
  l.n_embd_v = static_cast<std::uint32_t>(n_embd_v);
  c.layers.assign(n_layer, l);
  return c;
}

cache_layout cache_layout_of(const gguf::file& f) {
  cache_layout c;
  const std::string arch = f.architecture();
  const keys k{f, arch + "."};
  const std::size_t n_all =
      static_cast<std::size_t>(std::min<std::uint64_t>(k.uint("block_count").value_or(0), 4096));
  if (n_all == 0) return c;
  const std::size_t n_nextn = std::min<std::size_t>(n_all, k.uint("nextn_predict_layers").value_or(0));
  const std::size_t n_trunk = n_all - n_nextn;
  const std::uint64_t n_embd = k.uint("embedding_length").value_or(0);

  const auto n_head = k.per_layer("attention.head_count", n_all, 0);
  if (n_head.empty() || n_head[0] == 0) return c;  // not a transformer: no attention cache to describe
  const auto n_head_kv =
      k.find("attention.head_count_kv") ? k.per_layer("attention.head_count_kv", n_all, n_head[0]) : n_head;
  const std::uint64_t head_k = k.uint("attention.key_length").value_or(n_embd / n_head[0]);
  const std::uint64_t head_v = k.uint("attention.value_length").value_or(n_embd / n_head[0]);
  const std::uint64_t head_k_swa = k.uint("attention.key_length_swa").value_or(head_k);
  const std::uint64_t head_v_swa = k.uint("attention.value_length_swa").value_or(head_v);
  c.mla = k.uint("attention.key_length_mla").value_or(0) != 0 &&
          k.uint("attention.value_length_mla").value_or(0) != 0;

  // Sliding window: which layers, and how wide.
  std::vector<bool> is_swa(n_all, false);
  const arch_rules* r = rules_for(arch);
  const std::uint64_t window_key = k.uint("attention.sliding_window").value_or(0);
  const auto pattern_flags = k.flags("attention.sliding_window_pattern", n_all);
  bool swa = false;
  std::uint32_t pattern = 0;
  bool dense_first = false;
  if (r && r->swa_pattern) {
    swa = r->swa_needs_window_key ? window_key > 0 : true;
    c.n_swa = static_cast<std::uint32_t>(window_key ? window_key : r->default_window);
    pattern = r->swa_pattern;
    dense_first = r->dense_first;
  } else if (!r && window_key > 0 && k.find("attention.sliding_window_pattern")) {
    // An architecture outside the table that states both the window and its layers.
    swa = true;
    c.n_swa = static_cast<std::uint32_t>(window_key);
  }
  if (swa) {
    if (pattern_flags) {
      is_swa = *pattern_flags;
    } else {
      pattern = static_cast<std::uint32_t>(k.uint("attention.sliding_window_pattern").value_or(pattern));
      for (std::size_t il = 0; il < n_trunk; ++il)  // llama_hparams::set_swa_pattern
        is_swa[il] = pattern == 0 || (dense_first ? il % pattern != 0 : il % pattern < pattern - 1);
    }
    for (std::size_t il = n_trunk; il < n_all; ++il) is_swa[il] = false;
  } else {
    c.n_swa = 0;
  }

  // Recurrent (linear-attention) layers of the hybrid architectures.
  std::vector<bool> is_recr(n_all, false);
  if (r && r->full_attention_interval) {
    if (auto flags = k.flags("attention.recurrent_layers", n_all)) {
      is_recr = *flags;
    } else {
      const std::uint64_t interval =
          std::max<std::uint64_t>(1, k.uint("full_attention_interval").value_or(r->full_attention_interval));
      for (std::size_t il = 0; il < n_all; ++il) is_recr[il] = il < n_trunk && (il + 1) % interval != 0;
    }
  }
  const std::uint64_t d_conv = k.uint("ssm.conv_kernel").value_or(0),
                      d_inner = k.uint("ssm.inner_size").value_or(0);
  const std::uint64_t d_state = k.uint("ssm.state_size").value_or(0),
                      n_group = k.uint("ssm.group_count").value_or(0);
  const auto n_embd_r =
      static_cast<std::uint32_t>((d_conv > 0 ? d_conv - 1 : 0) * (d_inner + 2 * n_group * d_state));
  const auto n_embd_s = static_cast<std::uint32_t>(d_state * d_inner);

  c.layers.resize(n_all);
  for (std::size_t il = 0; il < n_all; ++il) {
    auto& l = c.layers[il];
    l.swa = is_swa[il];
    // n_embd_k_gqa(il) / n_embd_v_gqa(il): the head size of the layer's kind times its KV heads.
    l.n_embd_k = static_cast<std::uint32_t>((l.swa ? head_k_swa : head_k) * n_head_kv[il]);
    l.n_embd_v = static_cast<std::uint32_t>((l.swa ? head_v_swa : head_v) * n_head_kv[il]);
    l.has_v = !c.mla;
    if (il >= n_trunk) continue;  // next-token layers: not in the main context's memory
    if (is_recr[il]) {
      l.recurrent = true;
      l.n_embd_r = n_embd_r;
      l.n_embd_s = n_embd_s;
    } else {
      l.kv = true;
    }
  }
  return c;
}

}  // namespace agifarm::plan
