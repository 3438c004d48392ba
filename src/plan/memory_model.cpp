#include "plan/memory_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <set>

namespace agifarm::plan {

namespace {

constexpr std::uint64_t k_tensor_alignment = 32;
constexpr int k_sched_max_copies = 4;  // GGML_SCHED_MAX_COPIES: input copies with pipeline parallelism

std::uint64_t pad(std::uint64_t x, std::uint64_t n) { return (x + n - 1) / n * n; }

const std::set<std::string>& known_architectures() {
  static const std::set<std::string> s{"qwen3", "qwen3moe", "llama", "qwen2", "qwen2moe", "mistral", "qwen"};
  return s;
}

}  // namespace

std::uint64_t model_shape::bytes_of(gguf::tensor_class c) const {
  std::uint64_t s = 0;
  for (const auto& t : tensors)
    if (t.cls == c) s += t.bytes;
  return s;
}
std::uint64_t model_shape::layer_bytes(int layer) const {
  std::uint64_t s = 0;
  for (const auto& t : tensors)
    if (t.block == layer) s += t.bytes;
  return s;
}
std::uint64_t model_shape::layer_expert_bytes(int layer) const {
  std::uint64_t s = 0;
  for (const auto& t : tensors)
    if (t.block == layer && t.cls == gguf::tensor_class::ffn_expert) s += t.bytes;
  return s;
}

model_shape model_shape_of(const gguf::model& m) {
  model_shape s;
  auto sum = gguf::summarize(m);
  s.file = m.head().path;
  s.architecture = sum.architecture;
  s.name = sum.name;
  s.known_architecture = known_architectures().count(sum.architecture) > 0;
  s.n_layer = sum.n_layers;
  s.n_embd = sum.n_embd;
  s.n_head = sum.n_head;
  s.n_head_kv = sum.n_head_kv ? sum.n_head_kv : sum.n_head;
  s.head_dim_k = sum.key_length ? sum.key_length : (sum.n_head ? sum.n_embd / sum.n_head : 0);
  s.head_dim_v = sum.value_length ? sum.value_length : s.head_dim_k;
  s.n_vocab = sum.n_vocab;
  s.n_ctx_train = sum.context_length ? sum.context_length : 4096;
  s.n_ff = sum.n_ff;
  s.n_expert = sum.n_experts;
  s.n_expert_used = sum.n_experts_used;
  s.n_ff_exp = sum.n_ff_exp;
  s.n_params = sum.n_params;
  std::uint64_t most = 0;
  for (const auto& [type, bytes] : sum.bytes_by_type)
    if (bytes > most) {
      most = bytes;
      s.quant = type;
    }
  s.file_bytes = sum.file_bytes;
  bool has_output = false;
  int max_block = -1;
  for (const auto* t : m.tensors()) {
    shape_tensor st;
    st.name = t->name;
    st.bytes = t->n_bytes;
    st.block = gguf::block_index(t->name).value_or(-1);
    st.cls = gguf::classify(t->name);
    max_block = std::max(max_block, st.block);
    if (t->name == "output.weight") has_output = true;
    if (t->name == "token_embd.weight" && t->shape.size() >= 2 && s.n_vocab == 0) s.n_vocab = t->shape[1];
    if (t->name == "token_embd.weight" && t->shape.size() >= 1 && s.n_embd == 0) s.n_embd = t->shape[0];
    s.tensors.push_back(std::move(st));
  }
  s.has_output_tensor = has_output;
  if (s.n_layer == 0 && max_block >= 0) s.n_layer = static_cast<std::uint64_t>(max_block) + 1;
  if (!s.known_architecture) {
    s.warnings.push_back(fmt::format(
        "architecture '{}' is not one agifarm models exactly; memory is a generic estimate "
        "(standard attention KV cache, generic compute buffers)",
        s.architecture.empty() ? "(none)" : s.architecture));
  }
  if (s.n_head == 0) {
    s.n_head = std::max<std::uint64_t>(1, s.n_embd / 128);
    s.n_head_kv = s.n_head;
    s.head_dim_k = s.head_dim_v = s.n_embd / s.n_head;
    s.warnings.push_back("the model declares no attention heads; assuming head size 128 for the KV cache");
  }
  if (s.n_ff == 0 && !s.is_moe()) s.n_ff = 3 * s.n_embd;
  return s;
}

result<model_shape> load_model_shape(const std::string& path) {
  auto m = gguf::read_model(path);
  if (!m) return m.err();
  return model_shape_of(*m);
}

std::uint64_t kv_row_bytes(const std::string& type, std::uint64_t n) {
  // block size 32 for the quantized cache types; bytes per block as ggml's type traits
  if (type == "f32") return n * 4;
  if (type == "f16" || type == "bf16") return n * 2;
  std::uint64_t blocks = (n + 31) / 32;
  if (type == "q8_0") return blocks * 34;
  if (type == "q4_0" || type == "iq4_nl") return blocks * 18;
  if (type == "q4_1") return blocks * 20;
  if (type == "q5_0") return blocks * 22;
  if (type == "q5_1") return blocks * 24;
  return n * 2;
}

result<memory_estimate> estimate_memory(const model_shape& shape, const server_args& args,
                                        const std::vector<device_desc>& all_devices) {
  memory_estimate e;
  const int n_layer = static_cast<int>(shape.n_layer);

  // Devices that take part: split mode none uses only the main GPU.
  std::vector<int> dev_index;  // position in all_devices
  if (args.split == split_mode::none && !all_devices.empty()) {
    dev_index.push_back(std::clamp(args.main_gpu, 0, static_cast<int>(all_devices.size()) - 1));
  } else {
    for (int i = 0; i < static_cast<int>(all_devices.size()); ++i) dev_index.push_back(i);
  }
  if (args.split == split_mode::row)
    e.warnings.push_back("row split needs CUDA: matrices are cut over the GPUs, the KV cache and other tensors stay on the main GPU");
  const int nd = static_cast<int>(dev_index.size());

  // Layer -> device, exactly as llama_model_base::load_tensors (float arithmetic included).
  std::vector<float> splits(nd, 0.0f);
  bool all_zero = true;
  for (int i = 0; i < nd && i < static_cast<int>(args.tensor_split.size()); ++i)
    if (args.tensor_split[dev_index[i]] != 0.0f) all_zero = false;
  for (int i = 0; i < nd; ++i) {
    if (all_zero) splits[i] = static_cast<float>(all_devices[dev_index[i]].free_bytes);
    else splits[i] = dev_index[i] < static_cast<int>(args.tensor_split.size()) ? args.tensor_split[dev_index[i]] : 0.0f;
  }
  float split_sum = 0.0f;
  for (int i = 0; i < nd; ++i) {
    split_sum += splits[i];
    splits[i] = split_sum;
  }
  for (int i = 0; i < nd; ++i) splits[i] = split_sum > 0 ? splits[i] / split_sum : 1.0f;
  const int ngl = args.n_gpu_layers < 0 ? n_layer + 1 : args.n_gpu_layers;
  const int i_gpu_start = std::max(n_layer + 1 - ngl, 0);
  const int act_gpu_layers = nd == 0 ? 0 : std::min(ngl, n_layer + 1);
  e.layer_device.assign(n_layer + 1, -1);
  for (int il = 0; il <= n_layer; ++il) {
    if (il < i_gpu_start || (il - i_gpu_start) >= act_gpu_layers) continue;
    int g = static_cast<int>(std::upper_bound(splits.begin(), splits.end(), float(il - i_gpu_start) / act_gpu_layers) -
                             splits.begin());
    e.layer_device[il] = std::min(g, nd - 1);
  }
  const int row_main = std::clamp(args.main_gpu, 0, std::max(0, nd - 1));
  if (args.split == split_mode::row && nd > 1)
    for (auto& ld : e.layer_device)
      if (ld >= 0) ld = row_main;  // llama.cpp: with row split every layer's non-matrix part and KV live on the main GPU
  const int out_dev = e.layer_device[n_layer];

  // Buffer-type names -> device slot (-1: host).
  std::vector<std::regex> patterns;
  std::vector<int> target;
  for (const auto& o : args.overrides) {
    int t = -2;
    if (o.buffer.rfind("CPU", 0) == 0) t = -1;
    for (int i = 0; i < nd && t == -2; ++i) {
      const auto& d = all_devices[dev_index[i]];
      if (o.buffer == d.name) t = i;
      for (const auto& b : d.buffer_names)
        if (o.buffer == b) t = i;
    }
    if (t == -2) {
      std::string names = "CPU";
      for (int i = 0; i < nd; ++i) {
        const auto& d = all_devices[dev_index[i]];
        names += ", " + (d.buffer_names.empty() ? d.name : d.buffer_names.front());
      }
      return make_error(fmt::format("-ot {}={}: unknown buffer type '{}' (available: {})", o.pattern, o.buffer,
                                    o.buffer, names), 2);
    }
    try {
      patterns.emplace_back(o.pattern);
    } catch (const std::regex_error& err) {
      return make_error(fmt::format("-ot {}={}: the pattern is not a valid regex: {}", o.pattern, o.buffer, err.what()), 2);
    }
    target.push_back(t);
  }

  std::vector<std::uint64_t> model_bytes(nd, 0), ctx_bytes(nd, 0), comp_bytes(nd, 0);
  std::uint64_t host_model = 0, host_ctx = 0, host_comp = 0;
  auto add_model = [&](int dev, std::uint64_t b) { (dev < 0 ? host_model : model_bytes[dev]) += pad(b, k_tensor_alignment); };
  std::vector<bool> dev_has_layer(nd, false);
  bool host_has_layer = false, host_has_experts = false;
  std::set<int> host_expert_layers;
  for (int il = 0; il < n_layer; ++il) {
    if (e.layer_device[il] >= 0) dev_has_layer[e.layer_device[il]] = true;
    else host_has_layer = true;
  }
  e.dense_weight_bytes.assign(nd + 1, 0);
  e.expert_weight_bytes.assign(nd + 1, 0);
  e.layers_on_device.assign(nd + 1, 0);
  for (int il = 0; il < n_layer; ++il)
    ++e.layers_on_device[e.layer_device[il] < 0 ? nd : e.layer_device[il]];
  for (const auto& t : shape.tensors) {
    int dev;
    if (t.block >= 0 && t.block < n_layer) dev = e.layer_device[t.block];
    else if (t.name.rfind("output", 0) == 0) dev = out_dev;  // output.weight, output_norm.weight
    else dev = -1;                                            // token_embd and other global tensors
    for (std::size_t k = 0; k < patterns.size(); ++k) {
      if (std::regex_search(t.name, patterns[k])) {
        dev = target[k];
        break;
      }
    }
    const bool row_matrix = args.split == split_mode::row && nd > 1 && dev >= 0 && t.block >= 0 &&
                            t.cls != gguf::tensor_class::norm && t.cls != gguf::tensor_class::other;
    if (row_matrix) {
      // row split: each layer matrix is cut by rows over all devices in -ts proportions
      float prev = 0.0f;
      for (int i = 0; i < nd; ++i) {
        double share = static_cast<double>(splits[i] - prev);
        prev = splits[i];
        model_bytes[i] += static_cast<std::uint64_t>(static_cast<double>(t.bytes) * share);
      }
    } else {
      if (args.split == split_mode::row && nd > 1 && dev >= 0 && t.block >= 0) dev = row_main;
      add_model(dev, t.bytes);
    }
    {
      std::size_t slot = dev < 0 ? static_cast<std::size_t>(nd) : static_cast<std::size_t>(dev);
      if (t.cls == gguf::tensor_class::ffn_expert) e.expert_weight_bytes[slot] += t.bytes;
      else if (t.cls != gguf::tensor_class::token_embd) e.dense_weight_bytes[slot] += t.bytes;
    }
    if (t.cls == gguf::tensor_class::ffn_expert && dev < 0 && t.block >= 0) {
      host_has_experts = true;
      host_expert_layers.insert(t.block);
    }
    // Tied embeddings: the output layer gets its own copy of token_embd unless it is on the host too.
    if (t.name == "token_embd.weight" && !shape.has_output_tensor && out_dev >= 0) add_model(out_dev, t.bytes);
  }
  e.expert_layers_on_host = static_cast<int>(host_expert_layers.size());

  // KV cache.
  std::uint64_t n_ctx = args.ctx > 0 ? static_cast<std::uint64_t>(args.ctx) : shape.n_ctx_train;
  n_ctx = pad(n_ctx, 256);
  const int slots = args.slots();
  std::uint64_t n_ctx_seq = n_ctx;
  std::uint32_t n_stream = 1;
  if (!args.unified()) {
    n_ctx_seq = pad(n_ctx / slots, 256);
    n_stream = static_cast<std::uint32_t>(slots);
    n_ctx = n_ctx_seq * slots;
  }
  e.n_ctx = static_cast<std::uint32_t>(n_ctx);
  e.n_ctx_seq = static_cast<std::uint32_t>(n_ctx_seq);
  e.n_stream = n_stream;
  e.n_slots = slots;
  e.flash_attn = args.flash_attn != "off";
  const std::uint64_t kv_layer = (kv_row_bytes(args.type_k, shape.n_embd_k_gqa()) +
                                  kv_row_bytes(args.type_v, shape.n_embd_v_gqa())) * n_ctx_seq * n_stream;
  e.kv_bytes_per_cell_layer = kv_row_bytes(args.type_k, shape.n_embd_k_gqa()) + kv_row_bytes(args.type_v, shape.n_embd_v_gqa());
  for (int il = 0; il < n_layer; ++il) {
    int dev = args.no_kv_offload ? -1 : e.layer_device[il];
    (dev < 0 ? host_ctx : ctx_bytes[dev]) += kv_layer;
  }
  if (!e.flash_attn && (args.type_v != "f16" && args.type_v != "f32" && args.type_v != "bf16"))
    e.warnings.push_back("a quantized V cache needs flash attention (-fa on); llama.cpp will refuse this");

  // Compute buffers: the graph reserve's peak, fitted to llama.cpp (docs/planning.md, "compute").
  const bool has_overrides = !args.overrides.empty();
  const bool pipeline = nd > 1 && ngl > n_layer && args.split == split_mode::layer && !args.no_kv_offload && !has_overrides;
  const double copies = pipeline ? k_sched_max_copies : 1;
  const double n_batch = std::min<double>(static_cast<double>(n_ctx), args.n_batch);
  const double T = std::min<double>(n_batch, std::min(args.n_ubatch, args.n_batch));
  const double K = static_cast<double>(args.unified() ? n_ctx : n_ctx_seq);
  const double E = static_cast<double>(shape.n_embd);
  // Live activations of one layer per token (bytes), fitted on Qwen3 / Llama shapes: dense
  // 24.4*n_embd + 13.2*n_ff; MoE 33.3*n_ff_exp*n_expert_used; layers whose experts live in system RAM
  // keep only the attention part (48*n_embd) on the device.
  const double ff_moe = static_cast<double>(shape.n_ff_exp * shape.n_expert_used);
  const double act_full = shape.is_moe() ? 33.3 * ff_moe : 24.4 * E + 13.2 * static_cast<double>(shape.n_ff);
  const double act_attn = std::min(act_full, 48.0 * E);
  const double mask_b = e.flash_attn ? 2.0 : 4.0;    // f16 mask with flash attention, f32 without
  const double kq = e.flash_attn ? 0.0 : 4.0 * static_cast<double>(shape.n_head) * K;  // KQ scores per token
  const double n_out = args.n_outputs_max < 0 ? std::min<double>(T, slots) : args.n_outputs_max == 0 ? T : std::min<double>(T, args.n_outputs_max);
  const double logits = 4.0 * static_cast<double>(shape.n_vocab) * n_out;
  int n_with_layers = 0;
  for (int i = 0; i < nd; ++i) n_with_layers += dev_has_layer[i] ? 1 : 0;
  // Does every layer of device i keep its experts on the device?
  std::vector<bool> dev_experts_home(nd, true);
  for (int l : host_expert_layers)
    if (e.layer_device[l] >= 0) dev_experts_home[e.layer_device[l]] = false;
  bool first_seen = false;
  for (int i = 0; i < nd; ++i) {
    const bool has_out = i == out_dev;
    double c = 0;
    if (dev_has_layer[i]) {
      const double base = copies * mask_b * K * T + kq * T;
      const double act = dev_experts_home[i] ? act_full : act_attn;
      const double a = act * (first_seen ? 1.18 : 1.0) * T;
      first_seen = true;
      if (!pipeline && n_with_layers == 1 && has_out) {
        c = std::max(logits + 3.0 * E * T, base + 0.8 * a);  // one device: logits reuse the freed activations
      } else if (!pipeline && has_out) {
        c = std::max(logits + 8.0 * E * T, base + a);
      } else if (has_out) {
        c = base + std::max(0.6 * a, logits) + (copies + 5.0) * 4.0 * E * T;
      } else {
        c = base + a;
      }
    } else if (has_out) {
      c = logits + (copies + 0.6) * 4.0 * E * T;
    }
    comp_bytes[i] = static_cast<std::uint64_t>(c);
  }
  {
    double h = copies * mask_b * K * T + 8.0 * E * T;
    if (host_has_layer) h += 0.7 * (act_full + kq) * T;
    if (host_has_experts) h += 5.3 * 4.0 * ff_moe * T;
    if (nd == 0 || out_dev < 0) h += logits;
    host_comp = static_cast<std::uint64_t>(h);
  }
  // CUDA-like devices copy host weights in for large batches (op offload): room for the largest
  // host-resident matrix of a layer.
  std::uint64_t largest_host_matrix = 0;
  for (const auto& t : shape.tensors)
    if (t.block >= 0 && (t.cls == gguf::tensor_class::ffn_expert || t.cls == gguf::tensor_class::ffn_dense))
      largest_host_matrix = std::max(largest_host_matrix, t.bytes);
  for (int i = 0; i < nd; ++i)
    if (all_devices[dev_index[i]].offloads_ops && (host_has_experts || host_has_layer)) comp_bytes[i] += largest_host_matrix;

  e.output_buffer_bytes = static_cast<std::uint64_t>(4.0 * static_cast<double>(shape.n_vocab) * slots);
  std::vector<device_memory> out(all_devices.size());
  for (std::size_t i = 0; i < all_devices.size(); ++i) out[i].name = all_devices[i].name;
  for (int i = 0; i < nd; ++i) {
    auto& d = out[dev_index[i]];
    d.model_bytes = model_bytes[i];
    d.context_bytes = ctx_bytes[i];
    d.compute_bytes = comp_bytes[i];
    d.total_bytes = d.model_bytes + d.context_bytes + d.compute_bytes;
  }
  // Per-device vectors and layer_device refer to participating devices; map back to input positions.
  {
    auto remap = [&](std::vector<std::uint64_t>& v) {
      std::vector<std::uint64_t> r(all_devices.size() + 1, 0);
      for (int i = 0; i < nd; ++i) r[dev_index[i]] = v[i];
      r.back() = v[nd];
      v = std::move(r);
    };
    remap(e.dense_weight_bytes);
    remap(e.expert_weight_bytes);
    std::vector<int> l(all_devices.size() + 1, 0);
    for (int i = 0; i < nd; ++i) l[dev_index[i]] = e.layers_on_device[i];
    l.back() = e.layers_on_device[nd];
    e.layers_on_device = std::move(l);
  }
  for (auto& ld : e.layer_device)
    if (ld >= 0) ld = dev_index[ld];
  e.devices = std::move(out);
  e.host.model_bytes = host_model;
  e.host.context_bytes = host_ctx;
  e.host.compute_bytes = host_comp;
  e.host.total_bytes = host_model + host_ctx + host_comp;
  if (!shape.known_architecture) e.warnings.insert(e.warnings.end(), shape.warnings.begin(), shape.warnings.end());
  return e;
}

}  // namespace agifarm::plan
