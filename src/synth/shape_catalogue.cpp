// Parsing and validation of data/models.yaml. yaml-cpp throws; everything is converted to an error
// value here, at the module edge, with file:line:column from the node's mark.
#include "synth/shape_catalogue.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

namespace agifarm::synth {
namespace {

constexpr std::uint32_t k_max_dim = 1u << 24;  // no real model comes near; keeps products in u64

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

model_entry parse_entry(std::string_view name, const YAML::Node& node) {
  if (!node.IsMap()) fail(name, node, "a model entry must be a mapping of key: value");
  static const std::set<std::string, std::less<>> k_keys = {
      "id",        "name",      "arch",           "vocab",   "size_label", "n_layer",         "n_embd",
      "n_ff",      "n_head",    "n_head_kv",      "head_dim", "n_vocab",   "context_length",  "rope_theta",
      "rms_eps",   "n_expert",  "n_expert_used",  "n_ff_exp", "tied_embeddings", "qk_norm", "rope_freqs",
      "source"};
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string{};
    if (!k_keys.count(key)) fail(name, kv.first, fmt::format("unknown key '{}' in model entry", key));
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
  const auto& archs = known_shape_architectures();
  if (std::find(archs.begin(), archs.end(), e.arch) == archs.end())
    fail(name, node["arch"], fmt::format("unknown arch '{}' (known: qwen3, qwen3moe, llama)", e.arch));
  e.vocab = scalar(name, req("vocab"), "vocab");
  if (e.vocab.empty() || e.vocab.find('/') != std::string::npos || e.vocab.find("..") != std::string::npos)
    fail(name, node["vocab"], fmt::format("'vocab' must name a models/ggml-vocab-<vocab>.gguf, got '{}'", e.vocab));
  if (auto n = node["size_label"]) e.size_label = scalar(name, n, "size_label");
  if (auto n = node["source"]) e.source = scalar(name, n, "source");
  e.n_layer = to_u32(name, req("n_layer"), "n_layer", false);
  e.n_embd = to_u32(name, req("n_embd"), "n_embd", false);
  e.n_ff = to_u32(name, req("n_ff"), "n_ff", false);
  e.n_head = to_u32(name, req("n_head"), "n_head", false);
  e.n_head_kv = to_u32(name, req("n_head_kv"), "n_head_kv", false);
  e.n_vocab = to_u32(name, req("n_vocab"), "n_vocab", false);
  e.context_length = to_u32(name, req("context_length"), "context_length", false);
  if (auto n = node["head_dim"]) {
    e.head_dim = to_u32(name, n, "head_dim", false);
  } else {
    if (e.n_embd % e.n_head != 0)
      fail(name, node, fmt::format("no 'head_dim' and n_embd {} is not divisible by n_head {}", e.n_embd, e.n_head));
    e.head_dim = e.n_embd / e.n_head;
  }
  if (auto n = node["rope_theta"]) e.rope_theta = to_double(name, n, "rope_theta");
  if (auto n = node["rms_eps"]) e.rms_eps = to_double(name, n, "rms_eps");
  if (auto n = node["n_expert"]) e.n_expert = to_u32(name, n, "n_expert", true);
  if (auto n = node["n_expert_used"]) e.n_expert_used = to_u32(name, n, "n_expert_used", true);
  if (auto n = node["n_ff_exp"]) e.n_ff_exp = to_u32(name, n, "n_ff_exp", true);
  if (auto n = node["tied_embeddings"]) e.tied_embeddings = to_bool(name, n, "tied_embeddings");
  if (auto n = node["qk_norm"]) e.qk_norm = to_bool(name, n, "qk_norm");
  if (auto n = node["rope_freqs"]) e.rope_freqs = to_bool(name, n, "rope_freqs");

  if (e.n_head % e.n_head_kv != 0)
    fail(name, node["n_head_kv"],
         fmt::format("n_head {} is not a multiple of n_head_kv {}", e.n_head, e.n_head_kv));
  if (e.head_dim % 2 != 0 && e.rope_freqs)
    fail(name, node["head_dim"], fmt::format("head_dim {} must be even for rope_freqs", e.head_dim));
  const bool moe_arch = e.arch == "qwen3moe";
  if (moe_arch) {
    if (e.n_expert < 2) fail(name, node, fmt::format("arch {} needs n_expert >= 2", e.arch));
    if (e.n_expert_used == 0 || e.n_expert_used > e.n_expert)
      fail(name, node, fmt::format("n_expert_used {} must be in 1..n_expert ({})", e.n_expert_used, e.n_expert));
    if (e.n_ff_exp == 0) fail(name, node, fmt::format("arch {} needs n_ff_exp > 0", e.arch));
  } else if (e.n_expert != 0 || e.n_expert_used != 0 || e.n_ff_exp != 0) {
    fail(name, node, fmt::format("arch {} is dense: n_expert, n_expert_used, n_ff_exp must be absent or 0", e.arch));
  }
  return e;
}

}  // namespace

const std::vector<std::string_view>& known_shape_architectures() {
  static const std::vector<std::string_view> k_archs = {"qwen3", "qwen3moe", "llama"};
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
      if (!ids.insert(lower(e.id)).second) fail(name, node["id"], fmt::format("duplicate model id '{}'", e.id));
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
