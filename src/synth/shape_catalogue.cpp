// Parsing and validation of data/models.yaml. yaml-cpp throws; everything is converted to an error
// value here, at the module edge, with file:line:column from the node's mark.
#include "synth/shape_catalogue.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "gguf/gguf.hpp"
#include "synth/arch.hpp"

namespace agifarm::synth {
namespace {

constexpr std::uint32_t k_max_dim = 1u << 24;  // no real model comes near; keeps products in u64
constexpr std::uint32_t k_max_layers = 512;    // LLAMA_MAX_LAYERS (src/llama-hparams.h)
constexpr std::uint32_t k_max_experts = 1024;  // LLAMA_MAX_EXPERTS

struct catalogue_error {
  std::string message;
};

std::string where(std::string_view name, const YAML::Mark& m) {
  if (m.is_null()) return std::string(name);
  return fmt::format("{}:{}:{}", name, m.line + 1, m.column + 1);
}

[[noreturn]] void fail(std::string_view name, const YAML::Node& node, const std::string& what) {
  throw catalogue_error{fmt::format("{}: {}", where(name, node.Mark()), what)};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string scalar(std::string_view name, const YAML::Node& node, std::string_view key) {
  if (!node.IsScalar()) fail(name, node, fmt::format("'{}' must be a scalar", key));
  return node.Scalar();
}

std::uint32_t to_u32(std::string_view name, const YAML::Node& node, std::string_view key, bool allow_zero) {
  const std::string s = scalar(name, node, key);
  std::uint64_t v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc{} || p != end || s.empty())
    fail(name, node, fmt::format("'{}' must be a non-negative integer, got '{}'", key, s));
  if (v > k_max_dim) fail(name, node, fmt::format("'{}' = {} is larger than {}", key, v, k_max_dim));
  if (v == 0 && !allow_zero) fail(name, node, fmt::format("'{}' must be positive", key));
  return static_cast<std::uint32_t>(v);
}

double to_double(std::string_view name, const YAML::Node& node, std::string_view key) {
  const std::string s = scalar(name, node, key);
  char* endp = nullptr;
  const double v = std::strtod(s.c_str(), &endp);
  if (s.empty() || endp != s.c_str() + s.size() || !(v > 0) || v > 1e300)
    fail(name, node, fmt::format("'{}' must be a positive number, got '{}'", key, s));
  return v;
}

bool to_bool(std::string_view name, const YAML::Node& node, std::string_view key) {
  const std::string s = lower(scalar(name, node, key));
  if (s == "true" || s == "yes") return true;
  if (s == "false" || s == "no") return false;
  fail(name, node, fmt::format("'{}' must be true or false, got '{}'", key, node.Scalar()));
}

// Optional fields: which architectures take each is in their family (synth/arch.hpp).
using field_parser = void (*)(std::string_view name, const YAML::Node& node, std::string_view key,
                              model_entry& e);

template <std::uint32_t model_entry::*M>
void u32_field(std::string_view name, const YAML::Node& node, std::string_view key, model_entry& e) {
  e.*M = to_u32(name, node, key, true);
}
template <double model_entry::*M>
void number_field(std::string_view name, const YAML::Node& node, std::string_view key, model_entry& e) {
  e.*M = to_double(name, node, key);
}
template <bool model_entry::*M>
void bool_field(std::string_view name, const YAML::Node& node, std::string_view key, model_entry& e) {
  e.*M = to_bool(name, node, key);
}
// A string out of `allowed` (comma-separated in the message); "*type" means a ggml quantized type name.
template <std::string model_entry::*M>
void choice_field(std::string_view name, const YAML::Node& node, std::string_view key, model_entry& e) {
  static const std::set<std::string, std::less<>> k_rope = {"linear", "yarn"},
                                                  k_gating = {"softmax", "sigmoid"};
  std::string v = scalar(name, node, key);
  if (key == "rope_scaling" && !k_rope.count(v))
    fail(name, node, fmt::format("'rope_scaling' must be linear or yarn, got '{}'", v));
  if (key == "expert_gating" && !k_gating.count(v))
    fail(name, node, fmt::format("'expert_gating' must be softmax or sigmoid, got '{}'", v));
  if (key == "expert_source_type") {
    const auto* t = gguf::find_type(v);
    if (!t || t->block_size == 1)
      fail(name, node,
           fmt::format("'expert_source_type' must name a quantized ggml type (e.g. MXFP4), got '{}'", v));
    v = std::string(t->name);
  }
  e.*M = std::move(v);
}

struct optional_field {
  std::string_view key;
  field_parser parse;
};
using E = model_entry;
const optional_field k_optional_fields[] = {
    {"tied_embeddings", bool_field<&E::tied_embeddings>},
    {"qk_norm", bool_field<&E::qk_norm>},
    {"rope_freqs", bool_field<&E::rope_freqs>},
    {"sliding_window", u32_field<&E::sliding_window>},
    {"attention_bias", bool_field<&E::attention_bias>},
    {"partial_rotary_factor", number_field<&E::partial_rotary_factor>},
    {"rope_theta_swa", number_field<&E::rope_theta_swa>},
    {"rope_scaling", choice_field<&E::rope_scaling>},
    {"rope_scaling_factor", number_field<&E::rope_scaling_factor>},
    {"rope_scaling_orig_ctx", u32_field<&E::rope_scaling_orig_ctx>},
    {"attn_temperature_scale", number_field<&E::attn_temperature_scale>},
    {"n_ff_shexp", u32_field<&E::n_ff_shexp>},
    {"n_expert_shared", u32_field<&E::n_expert_shared>},
    {"n_layer_dense_lead", u32_field<&E::n_layer_dense_lead>},
    {"n_expert_groups", u32_field<&E::n_expert_groups>},
    {"n_group_used", u32_field<&E::n_group_used>},
    {"expert_gating", choice_field<&E::expert_gating>},
    {"expert_weights_scale", number_field<&E::expert_weights_scale>},
    {"expert_weights_norm", bool_field<&E::expert_weights_norm>},
    {"expert_probs_bias", bool_field<&E::expert_probs_bias>},
    {"expert_source_type", choice_field<&E::expert_source_type>},
    {"q_lora_rank", u32_field<&E::q_lora_rank>},
    {"kv_lora_rank", u32_field<&E::kv_lora_rank>},
    {"qk_nope_head_dim", u32_field<&E::qk_nope_head_dim>},
    {"qk_rope_head_dim", u32_field<&E::qk_rope_head_dim>},
    {"v_head_dim", u32_field<&E::v_head_dim>},
    {"linear_conv_kernel_dim", u32_field<&E::linear_conv_kernel_dim>},
    {"linear_key_head_dim", u32_field<&E::linear_key_head_dim>},
    {"linear_value_head_dim", u32_field<&E::linear_value_head_dim>},
    {"linear_num_key_heads", u32_field<&E::linear_num_key_heads>},
    {"linear_num_value_heads", u32_field<&E::linear_num_value_heads>},
    {"full_attention_interval", u32_field<&E::full_attention_interval>},
    {"n_layer_nextn", u32_field<&E::n_layer_nextn>},
};

const optional_field* find_optional(std::string_view key) {
  for (const auto& f : k_optional_fields)
    if (f.key == key) return &f;
  return nullptr;
}

std::string known_archs() {
  std::string out;
  for (const auto* f : arch_families()) out += (out.empty() ? "" : ", ") + std::string(f->arch);
  return out;
}

model_entry parse_entry(std::string_view name, const YAML::Node& node) {
  if (!node.IsMap()) fail(name, node, "a model entry must be a mapping of key: value");
  static const std::set<std::string, std::less<>> k_keys = {
      "id",      "name",     "arch",          "vocab",    "size_label", "n_layer",        "n_embd",
      "n_ff",    "n_head",   "n_head_kv",     "head_dim", "n_vocab",    "context_length", "rope_theta",
      "rms_eps", "n_expert", "n_expert_used", "n_ff_exp", "source"};
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string{};
    if (!k_keys.count(key) && !find_optional(key))
      fail(name, kv.first, fmt::format("unknown key '{}' in model entry", key));
  }
  auto req = [&](const char* key) {
    YAML::Node n = node[key];
    if (!n) fail(name, node, fmt::format("model entry lacks required key '{}'", key));
    return n;
  };
  model_entry e;
  e.line = static_cast<int>(node.Mark().line) + 1;
  e.id = scalar(name, req("id"), "id");
  if (e.id.empty()) fail(name, node["id"], "'id' must not be empty");
  e.name = scalar(name, req("name"), "name");
  e.arch = scalar(name, req("arch"), "arch");
  const arch_family* family = find_arch(e.arch);
  if (!family) fail(name, node["arch"], fmt::format("unknown arch '{}' (known: {})", e.arch, known_archs()));
  e.vocab = scalar(name, req("vocab"), "vocab");
  if (e.vocab.empty() || e.vocab.find('/') != std::string::npos || e.vocab.find("..") != std::string::npos)
    fail(name, node["vocab"],
         fmt::format("'vocab' must name a models/ggml-vocab-<vocab>.gguf, got '{}'", e.vocab));
  if (auto n = node["size_label"]) e.size_label = scalar(name, n, "size_label");
  if (auto n = node["source"]) e.source = scalar(name, n, "source");
  e.n_layer = to_u32(name, req("n_layer"), "n_layer", false);
  e.n_embd = to_u32(name, req("n_embd"), "n_embd", false);
  e.n_ff = to_u32(name, req("n_ff"), "n_ff", family->n_ff_optional);
  e.n_head = to_u32(name, req("n_head"), "n_head", false);
  e.n_head_kv = to_u32(name, req("n_head_kv"), "n_head_kv", false);
  e.n_vocab = to_u32(name, req("n_vocab"), "n_vocab", false);
  e.context_length = to_u32(name, req("context_length"), "context_length", false);
  if (auto n = node["head_dim"]) {
    e.head_dim = to_u32(name, n, "head_dim", false);
  } else {
    if (e.n_embd % e.n_head != 0)
      fail(name, node,
           fmt::format("no 'head_dim' and n_embd {} is not divisible by n_head {}", e.n_embd, e.n_head));
    e.head_dim = e.n_embd / e.n_head;
  }
  if (auto n = node["rope_theta"]) e.rope_theta = to_double(name, n, "rope_theta");
  if (auto n = node["rms_eps"]) e.rms_eps = to_double(name, n, "rms_eps");
  if (auto n = node["n_expert"]) e.n_expert = to_u32(name, n, "n_expert", true);
  if (auto n = node["n_expert_used"]) e.n_expert_used = to_u32(name, n, "n_expert_used", true);
  if (auto n = node["n_ff_exp"]) e.n_ff_exp = to_u32(name, n, "n_ff_exp", true);
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    const optional_field* f = find_optional(key);
    if (!f) continue;
    if (std::find(family->fields.begin(), family->fields.end(), key) == family->fields.end()) {
      std::string takes;
      for (auto k : family->fields) takes += (takes.empty() ? "" : ", ") + std::string(k);
      fail(name, kv.first,
           fmt::format("'{}' does not apply to arch {} (it takes: {})", key, e.arch,
                       takes.empty() ? "none" : takes));
    }
    f->parse(name, kv.second, key, e);
  }

  if (e.n_head % e.n_head_kv != 0)
    fail(name, node["n_head_kv"],
         fmt::format("n_head {} is not a multiple of n_head_kv {}", e.n_head, e.n_head_kv));
  if (e.head_dim % 2 != 0 && e.rope_freqs)
    fail(name, node["head_dim"], fmt::format("head_dim {} must be even for rope_freqs", e.head_dim));
  if (e.block_count() > k_max_layers)
    fail(name, node["n_layer"],
         fmt::format("n_layer + n_layer_nextn = {} is more than llama.cpp's {} layers", e.block_count(),
                     k_max_layers));
  if (family->moe) {
    if (e.n_expert < 2) fail(name, node, fmt::format("arch {} needs n_expert >= 2", e.arch));
    if (e.n_expert > k_max_experts)
      fail(name, node["n_expert"],
           fmt::format("n_expert {} is more than llama.cpp's {}", e.n_expert, k_max_experts));
    if (e.n_expert_used == 0 || e.n_expert_used > e.n_expert)
      fail(name, node,
           fmt::format("n_expert_used {} must be in 1..n_expert ({})", e.n_expert_used, e.n_expert));
    if (e.n_ff_exp == 0) fail(name, node, fmt::format("arch {} needs n_ff_exp > 0", e.arch));
  } else if (e.n_expert != 0 || e.n_expert_used != 0 || e.n_ff_exp != 0) {
    fail(name, node,
         fmt::format("arch {} is dense: n_expert, n_expert_used, n_ff_exp must be absent or 0", e.arch));
  }
  if (!e.rope_scaling.empty()) {
    if (!(e.rope_scaling_factor > 0))
      fail(name, node["rope_scaling"],
           fmt::format("rope_scaling {} needs 'rope_scaling_factor'", e.rope_scaling));
    if (e.rope_scaling == "yarn" && e.rope_scaling_orig_ctx == 0)
      fail(name, node["rope_scaling"], "rope_scaling yarn needs 'rope_scaling_orig_ctx'");
  } else if (e.rope_scaling_factor > 0 || e.rope_scaling_orig_ctx > 0) {
    fail(name, node["rope_scaling_factor"] ? node["rope_scaling_factor"] : node["rope_scaling_orig_ctx"],
         "'rope_scaling_factor' / 'rope_scaling_orig_ctx' need 'rope_scaling'");
  }
  if (family->check) {
    if (auto err = family->check(e)) {
      const YAML::Node at = node[err->field];
      fail(name, at ? at : node, err->message);
    }
  }
  return e;
}

}  // namespace

const std::vector<std::string_view>& known_shape_architectures() {
  static const std::vector<std::string_view> k_archs = [] {
    std::vector<std::string_view> v;
    for (const auto* f : arch_families()) v.push_back(f->arch);
    return v;
  }();
  return k_archs;
}

result<std::vector<model_entry>> parse_model_catalogue(std::string_view yaml_text, std::string_view name) {
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    if (!root.IsMap()) fail(name, root, "the catalogue must be a mapping with a 'models' list");
    const YAML::Node models = root["models"];
    if (!models) fail(name, root, "the catalogue lacks the 'models' list");
    if (!models.IsSequence()) fail(name, models, "'models' must be a list of model entries");
    std::vector<model_entry> out;
    std::set<std::string> ids;
    for (const auto& node : models) {
      model_entry e = parse_entry(name, node);
      if (!ids.insert(lower(e.id)).second)
        fail(name, node["id"], fmt::format("duplicate model id '{}'", e.id));
      out.push_back(std::move(e));
    }
    return out;
  } catch (const catalogue_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::Exception& e) {
    return make_error(fmt::format("{}: {}", where(name, e.mark), e.msg), 2);
  }
}

result<std::vector<model_entry>> load_model_catalogue(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("{}: cannot open the model catalogue", path), 2);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(fmt::format("{}: read error", path), 2);
  return parse_model_catalogue(ss.str(), path);
}

std::string default_catalogue_path() {
  if (const char* env = std::getenv("AGIFARM_MODELS"); env && *env) return env;
#ifdef AGIFARM_DATA_DIR
  return std::string(AGIFARM_DATA_DIR) + "/models.yaml";
#else
  return "data/models.yaml";
#endif
}

result<model_entry> find_model(const std::vector<model_entry>& catalogue, std::string_view id) {
  const std::string want = lower(id);
  std::string known;
  for (const auto& e : catalogue) {
    if (lower(e.id) == want) return e;
    known += (known.empty() ? "" : ", ") + e.id;
  }
  return make_error(fmt::format("unknown model '{}' (known: {})", id, known), 2);
}

}  // namespace agifarm::synth
