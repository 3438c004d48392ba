// Split-model discovery, tensor classification and the inspect summary.
#include <fmt/format.h>

#include <filesystem>
#include <regex>

#include "gguf/gguf.hpp"

namespace agifarm::gguf {

std::string_view to_string(tensor_class c) {
  switch (c) {
    case tensor_class::token_embd:
      return "token_embd";
    case tensor_class::attention:
      return "attention";
    case tensor_class::ffn_dense:
      return "ffn_dense";
    case tensor_class::ffn_expert:
      return "ffn_expert";
    case tensor_class::ffn_shared_expert:
      return "ffn_shared_expert";
    case tensor_class::norm:
      return "norm";
    case tensor_class::output:
      return "output";
    case tensor_class::other:
      return "other";
  }
  return "other";
}

std::optional<int> block_index(std::string_view n) {
  if (!n.starts_with("blk.")) return std::nullopt;
  n.remove_prefix(4);
  int v = 0;
  std::size_t i = 0;
  for (; i < n.size() && i < 7 && n[i] >= '0' && n[i] <= '9'; ++i) v = v * 10 + (n[i] - '0');
  if (i == 0 || i >= n.size() || n[i] != '.') return std::nullopt;
  return v;
}

tensor_class classify(std::string_view n) {
  auto has = [&](std::string_view s) { return n.find(s) != std::string_view::npos; };
  if (n.starts_with("token_embd") || n.starts_with("per_layer_token_embd")) {
    return has("norm") ? tensor_class::norm : tensor_class::token_embd;
  }
  if (n.starts_with("output.") || n == "output") return tensor_class::output;
  if (has("norm")) return tensor_class::norm;
  if (has("_shexp")) return tensor_class::ffn_shared_expert;
  if (has("_exps")) return tensor_class::ffn_expert;
  if (has(".ffn_gate_inp") || has(".exp_probs_b")) return tensor_class::other;  // MoE router: tiny, F32
  if (has(".attn_")) return tensor_class::attention;
  if (has(".ffn_")) return tensor_class::ffn_dense;
  return tensor_class::other;
}

std::uint64_t model::file_bytes() const {
  std::uint64_t n = 0;
  for (const auto& p : parts) n += p.file_size;
  return n;
}

std::vector<const tensor_info*> model::tensors() const {
  std::vector<const tensor_info*> out;
  for (const auto& p : parts)
    for (const auto& t : p.tensors) out.push_back(&t);
  return out;
}

result<model> read_model(const std::string& path, const read_options& opt) {
  auto first = read_file(path, opt);
  if (!first) return first.err();
  model m;
  auto count = first->get_uint("split.count").value_or(1);
  if (count <= 1) {
    m.parts.push_back(std::move(*first));
    return m;
  }
  // llama.cpp names parts "<prefix>-%05d-of-%05d.gguf" (llama_split_path).
  static const std::regex k_split_name(R"(^(.*)-(\d{5})-of-(\d{5})\.gguf$)");
  std::smatch match;
  if (!std::regex_match(path, match, k_split_name))
    return make_error(fmt::format("{}: split.count is {} but the file name does not follow "
                                  "<name>-NNNNN-of-NNNNN.gguf, so the other parts cannot be found",
                                  path, count),
                      2);
  if (std::stoull(match[3].str()) != count)
    return make_error(
        fmt::format("{}: file name says {} parts but split.count is {}", path, match[3].str(), count), 2);
  std::string prefix = match[1].str();
  auto this_no = std::stoull(match[2].str());
  for (std::uint64_t i = 1; i <= count; ++i) {
    if (i == this_no) {
      m.parts.push_back(std::move(*first));
      continue;
    }
    std::string part = fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, i, count);
    if (!std::filesystem::exists(part))
      return make_error(fmt::format("{}: split part {} of {} is missing: {}", path, i, count, part), 2);
    auto f = read_file(part, opt);
    if (!f) return f.err();
    m.parts.push_back(std::move(*f));
  }
  // Metadata lives in part 1; llama.cpp requires the parts in order.
  for (std::uint64_t i = 0; i < count; ++i) {
    auto no = m.parts[i].get_uint("split.no");
    if (no && *no != i)
      return make_error(
          fmt::format("{}: has split.no {} but its name says part {}", m.parts[i].path, *no, i + 1), 2);
  }
  if (auto total = m.parts[0].get_uint("split.tensors.count")) {
    std::uint64_t n = 0;
    for (const auto& p : m.parts) n += p.tensors.size();
    if (n != *total)
      return make_error(fmt::format("{}: split.tensors.count is {} but the {} parts hold {} tensors",
                                    m.parts[0].path, *total, count, n),
                        2);
  }
  return m;
}

summary summarize(const model& m) {
  const file& h = m.head();
  summary s;
  s.file = h.path;
  s.version = h.version;
  s.architecture = h.architecture();
  s.name = h.get_string("general.name").value_or("");
  auto arch = [&](std::string_view k) -> std::uint64_t {
    const value* v = h.find(fmt::format("{}.{}", s.architecture, k));
    if (!v) return 0;
    if (auto u = v->as_uint()) return *u;
    // Per-layer arrays (e.g. head_count_kv on hybrid models): report the largest.
    if (auto* a = v->as_array()) {
      std::uint64_t mx = 0;
      for (const auto& it : a->items) mx = std::max<std::uint64_t>(mx, it.as_uint().value_or(0));
      return mx;
    }
    return 0;
  };
  s.n_layers = arch("block_count");
  s.n_embd = arch("embedding_length");
  s.n_head = arch("attention.head_count");
  s.n_head_kv = arch("attention.head_count_kv");
  if (!s.n_head_kv) s.n_head_kv = s.n_head;
  s.key_length = arch("attention.key_length");
  s.value_length = arch("attention.value_length");
  if (!s.key_length && s.n_head) s.key_length = s.n_embd / s.n_head;
  if (!s.value_length) s.value_length = s.key_length;
  s.context_length = arch("context_length");
  s.n_experts = arch("expert_count");
  s.n_experts_used = arch("expert_used_count");
  s.n_ff = arch("feed_forward_length");
  s.n_ff_exp = arch("expert_feed_forward_length");
  s.n_vocab = arch("vocab_size");
  if (!s.n_vocab)
    if (auto* v = h.find("tokenizer.ggml.tokens"); v && v->as_array()) s.n_vocab = v->as_array()->count;
  s.n_split = m.parts.size();
  s.file_bytes = m.file_bytes();
  for (auto c :
       {tensor_class::token_embd, tensor_class::attention, tensor_class::ffn_dense, tensor_class::ffn_expert,
        tensor_class::ffn_shared_expert, tensor_class::norm, tensor_class::output, tensor_class::other})
    s.tensor_bytes_by_class[std::string(to_string(c))] = 0;
  for (const tensor_info* t : m.tensors()) {
    ++s.n_tensors;
    s.n_params += t->n_elements();
    s.tensor_bytes_by_class[std::string(to_string(classify(t->name)))] += t->n_bytes;
    const type_info* ti = find_type(t->type);
    s.bytes_by_type[ti ? std::string(ti->name) : fmt::format("type{}", t->type)] += t->n_bytes;
    if (!s.n_vocab && t->name == "token_embd.weight" && t->shape.size() >= 2) s.n_vocab = t->shape[1];
  }
  return s;
}

}  // namespace agifarm::gguf
