#include "plan/speed_model.hpp"

#include <algorithm>
#include <cmath>

namespace agifarm::plan {

double cpu_matmul_efficiency(std::string_view type) {
  // Fraction of the FP32 FMA peak that llama.cpp's CPU matrix kernels reach in prefill, per weight
  // type (llama-bench pp512 on synthesized and llama-quantize'd models, docs/benchmarks.md). Q4_0 is
  // repacked into interleaved rows at load time and runs fastest; Q6_K's unpacking costs the most.
  struct rate {
    std::string_view type;
    double eta;
  };
  static constexpr rate k_rates[] = {{"Q4_0", 0.78}, {"Q4_1", 0.65}, {"Q5_0", 0.55}, {"Q5_1", 0.55},
                                     {"Q8_0", 0.60}, {"Q2_K", 0.50}, {"Q3_K", 0.50}, {"Q4_K", 0.80},
                                     {"Q5_K", 0.60}, {"Q6_K", 0.43}, {"F16", 0.57},  {"BF16", 0.57},
                                     {"F32", 0.45},  {"MXFP4", 0.50}};
  for (const auto& r : k_rates)
    if (r.type == type) return r.eta;
  return 0.35;  // IQ and ternary types: lookup-table kernels, slow on CPUs
}

double speed_params::eta_bw(std::string_view generation) const {
  for (const auto& g : generations)
    if (g.generation == generation) return g.bw;
  return eta_bw_gpu;
}
double speed_params::eta_flops(std::string_view generation) const {
  for (const auto& g : generations)
    if (g.generation == generation) return g.flops;
  return eta_flops_gpu;
}
double speed_params::type_factor_of(std::string_view type) const {
  for (const auto& t : gpu_types)
    if (t.type == type) return t.factor;
  return 1.0;
}

namespace {

// Work (FLOP / efficiency) per weight byte for one token through a group of tensors: the type mix of
// the group decides the kernels' speed.
struct work_per_byte {
  double cpu = 0, gpu = 0;  // effective FLOP per byte (divide by peak FLOP/s for seconds)
  // Dequantize-to-F16 path: bytes written and read back per weight byte (4 per quantized element:
  // the F16 copy is written once and read by the GEMM); 0 for F16 / BF16 / F32 weights.
  double dequant = 0;
  double gpu_f16 = 0;  // GPU work per byte when every matmul runs as an F16 GEMM (dequantize path)
};

work_per_byte group_work(const model_shape& s, const speed_params& sp,
                         bool (*in_group)(const shape_tensor&)) {
  double bytes = 0, cpu = 0, gpu = 0, dequant = 0, gpu_f16 = 0;
  const double f16_factor = sp.type_factor_of("F16");
  for (const auto& t : s.tensors) {
    if (!in_group(t) || t.bytes == 0) continue;
    // Hand-made shapes may lack element counts: take the file's parameters per byte.
    const double elements = t.n_elements ? static_cast<double>(t.n_elements)
                                         : static_cast<double>(t.bytes) * static_cast<double>(s.n_params) /
                                               std::max(1.0, static_cast<double>(s.file_bytes));
    const double flops = 2.0 * elements;
    const auto* ti = gguf::find_type(t.type);
    bytes += static_cast<double>(t.bytes);
    cpu += flops / cpu_matmul_efficiency(ti ? ti->name : std::string_view());
    gpu += flops / sp.type_factor_of(ti ? ti->name : std::string_view());  // over eta_flops(generation)
    const std::string_view name = ti ? ti->name : std::string_view();
    if (name != "F16" && name != "BF16" && name != "F32") dequant += 4.0 * elements;
    gpu_f16 += flops / f16_factor;
  }
  if (bytes <= 0) return {};
  return {cpu / bytes, gpu / bytes, dequant / bytes, gpu_f16 / bytes};
}

bool is_expert(const shape_tensor& t) { return t.cls == gguf::tensor_class::ffn_expert; }
bool is_output(const shape_tensor& t) { return t.cls == gguf::tensor_class::output; }
// Matrices a token passes through in the repeating layers (norms are vectors: no matmul work).
bool is_layer_dense(const shape_tensor& t) {
  return t.cls != gguf::tensor_class::ffn_expert && t.cls != gguf::tensor_class::token_embd &&
         t.cls != gguf::tensor_class::output && t.cls != gguf::tensor_class::norm;
}
bool is_token_embd(const shape_tensor& t) { return t.cls == gguf::tensor_class::token_embd; }

}  // namespace

const speed_params& default_speed_params() {
  // Fitted by `agifarm calibrate --fit` on the fit rows of data/gpu_measurements.yaml (docs/benchmarks.md,
  // "Speed model against published measurements"); generations as data/gpus.yaml names them.
  static const speed_params k_params = [] {
    speed_params p;
    // (generation, decode share of the memory bandwidth, prefill share of the FP16 peak for Q4_K)
    p.generations = {
        {"turing", 0.706, 0.35},  {"ampere", 0.879, 0.403},   {"ada", 0.943, 0.399},
        {"hopper", 0.736, 0.349}, {"blackwell", 0.897, 0.35}, {"gb10", 0.734, 0.277},
        {"rdna2", 0.83, 0.228},   {"rdna3", 0.466, 0.35},     {"rdna35", 0.861, 0.339},
        {"apple", 0.62, 0.536},
    };
    // GPU prefill speed of a weight type relative to Q4_K (Q4_0 and Q8_0: no fit row tells them apart
    // from Q4_K once the pre-mid-2024 rows run the dequantize path, so they stay at 1)
    p.gpu_types = {{"Q4_0", 1.0},   {"Q8_0", 1.0},   {"F16", 1.4},
                   {"MXFP4", 1.21}, {"Q6_K", 0.956}, {"Q2_K", 0.864}};
    p.gpu_expert_flops = 0.279;  // mul_mat_id: few tokens per expert per micro-batch
    p.layer_overhead_gpu_s = 66.2e-6;
    p.eta_host_expert = 0.961;
    p.host_expert_layer_s = 485e-6;  // per layer with experts in RAM, per token
    p.eta_offload_link = 1.34;       // above nominal: the streamed share of experts is less than all
    p.gpu_hop_s = 843e-6;            // 2-8 GPU layer-split rows of Llama 3 8B and 70B
    p.rpc_hop_s = 1.47e-3;
    p.rpc_round_trips = 19.2;
    p.rpc_prefill_bytes = 21.2;
    p.row_layer_sync_s = 93.2e-6;
    p.row_prefill_factor = 1.1;  // no fit row measures row-split prefill now: the start value
    p.gpu_expert_bw = 0.845;     // GPU MoE decode: expert reads at this share of the dense rate
    return p;
  }();
  return k_params;
}

speed_estimate estimate_speed(const speed_input& in) {
  speed_estimate out;
  if (!in.shape || !in.placement) return out;
  const speed_params& sp = in.params ? *in.params : default_speed_params();
  const auto& s = *in.shape;
  const auto& p = *in.placement;
  const std::size_t nd = in.devices.size();
  const double used_share =
      s.is_moe() && s.n_expert ? static_cast<double>(s.n_expert_used) / s.n_expert : 1.0;
  const int slots = std::max(1, in.slots);
  // Share of an MoE layer's experts that N tokens touch: 1 - (1 - k/n)^N.
  const double batch_share = s.is_moe() ? 1.0 - std::pow(1.0 - used_share, slots) : 1.0;

  const work_per_byte w_dense = group_work(s, sp, is_layer_dense);
  const work_per_byte w_expert = group_work(s, sp, is_expert);
  // The output matrix (logits): the tied token embedding plays its part when there is none.
  const work_per_byte w_output =
      s.has_output_tensor ? group_work(s, sp, is_output) : group_work(s, sp, is_token_embd);
  const double output_bytes =
      static_cast<double>(s.has_output_tensor ? s.bytes_of(gguf::tensor_class::output)
                                              : s.bytes_of(gguf::tensor_class::token_embd));
  // Where the output layer runs: the device of "layer n_layer" (-1 = host). A placement without a
  // layer map (hand-made) keeps the output inside dense_weight_bytes, counted like a layer matrix.
  std::size_t output_slot = static_cast<std::size_t>(-1);
  if (p.layer_device.size() == s.n_layer + 1)
    output_slot = p.layer_device.back() >= 0 ? static_cast<std::size_t>(p.layer_device.back()) : nd;
  const bool gpu_present = nd > 0 && !in.devices[0].is_cpu;

  double t_dec = 0, t_pre = 0, t_step_mem = 0, t_step_flops = 0, bytes_tok = 0;
  for (std::size_t i = 0; i <= nd && i < p.dense_weight_bytes.size(); ++i) {
    const compute_unit& u = i < nd ? in.devices[i] : in.host;
    const bool has_output = i == output_slot;
    // dense_weight_bytes holds the output matrix when the file has one (a tied copy is not in it).
    const double out_b = has_output ? output_bytes : 0;
    const double layer_dense =
        std::max(0.0, static_cast<double>(p.dense_weight_bytes[i]) - (s.has_output_tensor ? out_b : 0.0));
    const double expert = static_cast<double>(p.expert_weight_bytes[i]);
    const int layers = i < p.layers_on_device.size() ? p.layers_on_device[i] : 0;
    // KV read per token: full-attention layers read every cell, sliding-window layers their window,
    // recurrent layers their fixed state (a placement without the per-layer split: every layer full).
    const double naive_kv = static_cast<double>(p.kv_bytes_per_cell_layer) * layers * in.depth;
    double kv = naive_kv;
    if (i < p.kv_full_bytes_per_cell.size() && i < p.kv_swa_bytes_per_cell.size() &&
        i < p.recurrent_state_bytes.size()) {
      const double window = p.n_swa ? std::min<double>(in.depth, p.n_swa) : in.depth;
      kv = static_cast<double>(p.kv_full_bytes_per_cell[i]) * in.depth +
           static_cast<double>(p.kv_swa_bytes_per_cell[i]) * window +
           static_cast<double>(p.recurrent_state_bytes[i]);
    }
    // Attention work scales like the cells it reads.
    const double attn_share = naive_kv > 0 ? std::min(1.0, kv / naive_kv) : 1.0;
    if (layer_dense + expert + out_b == 0 && layers == 0) continue;
    const double eta_bw = u.is_cpu ? k_eta_bw_cpu : sp.eta_bw(u.generation);
    const double bw = std::max(1.0, u.bandwidth_bytes_per_s * eta_bw);
    const double eta_fl = u.is_cpu ? 1.0 : sp.eta_flops(u.generation);  // GPU work per byte is over this
    const double peak = std::max(1.0, u.flops * eta_fl);
    // On the dequantize path every GPU matmul is an F16 GEMM, whatever the weights' type.
    auto per_byte = [&](const work_per_byte& w) {
      return u.is_cpu ? w.cpu : sp.dequant_to_f16 ? w.gpu_f16 : w.gpu;
    };
    const double expert_slowdown = u.is_cpu ? k_cpu_expert_slowdown : 1.0 / sp.gpu_expert_flops;

    // Decode: every weight a token needs is read once per token (experts: the used share). Experts in
    // system RAM under a GPU (expert offload) are read at a share of the host's bandwidth, and each
    // such layer hands its activations to the CPU and back.
    const bool host_experts = u.is_cpu && gpu_present && expert > 0;
    // GPU experts: mul_mat_id reads n_expert_used small matrices per layer, below a dense read's rate.
    const double expert_bw = host_experts ? std::max(1.0, bw * sp.eta_host_expert)
                                          : (u.is_cpu ? bw : std::max(1.0, bw * sp.gpu_expert_bw));
    const double read = layer_dense + out_b + expert * used_share + kv;
    bytes_tok += read;
    int expert_layers = 0;
    if (host_experts) expert_layers = std::max(p.expert_layers_on_host, 1);
    const double layer_overhead = u.is_cpu ? k_layer_overhead_cpu_s : sp.layer_overhead_gpu_s;
    const double overhead = layers * layer_overhead + expert_layers * sp.host_expert_layer_s;
    t_dec += (layer_dense + out_b + kv) / bw + expert * used_share / expert_bw + overhead;

    // Prefill: compute-bound; logits are computed for the last prompt token only, so the output
    // matrix costs nothing per prompt token.
    const double attn_flops =
        4.0 * static_cast<double>(s.n_head * s.head_dim_k) * layers * in.depth * attn_share;
    const double layer_work =
        layer_dense * per_byte(w_dense) + expert * used_share * per_byte(w_expert) * expert_slowdown;
    const double eta_attn = u.is_cpu ? 0.5 : 1.0;
    const bool op_offload = i == nd && nd > 0 && in.offload_link_bytes_per_s > 0 && !in.devices[0].is_cpu &&
                            in.n_ubatch >= k_op_offload_min_batch;
    if (op_offload) {
      // The host's matmuls run on device 0: each micro-batch streams the host weights it touches (all
      // experts a batch of U tokens routes to) over the link, then computes at the device's rate.
      const double U = in.n_ubatch;
      const double share_u = s.is_moe() ? 1.0 - std::pow(1.0 - used_share, U) : 1.0;
      const double streamed = layer_dense + expert * share_u;
      const auto& g = in.devices[0];
      const double gpu_work =
          layer_dense * w_dense.gpu + expert * used_share * w_expert.gpu / sp.gpu_expert_flops;
      t_pre += streamed / (in.offload_link_bytes_per_s * sp.eta_offload_link) / U +
               (gpu_work + attn_flops) / std::max(1.0, g.flops * sp.eta_flops(g.generation));
    } else {
      t_pre += (layer_work + attn_flops / eta_attn) / peak;
      if (!u.is_cpu) {
        // each micro-batch of U tokens also reads the device's weights once (experts: those the batch
        // routes to): what bounds small batches and MoE models with many experts
        const double U = std::max(1, in.n_ubatch);
        const double share_u = s.is_moe() ? 1.0 - std::pow(1.0 - used_share, U) : 1.0;
        t_pre += (layer_dense + expert * share_u) / bw / U;
        // each micro-batch is one graph evaluation: the same per-layer dispatch cost as a decoded token
        t_pre += layers * layer_overhead / U;
        // dequantize-to-F16 + cuBLAS: the F16 copy of the weights written and read per micro-batch
        if (sp.dequant_to_f16)
          t_pre += (layer_dense * w_dense.dequant + expert * share_u * w_expert.dequant) / bw / U;
      }
    }

    // N slots decoding together: one step reads the weights once (experts: the share N tokens touch)
    // and each slot's KV; each token pays the matmul work, logits included.
    t_step_mem += (layer_dense + out_b + kv * slots) / bw + expert * batch_share / expert_bw + overhead;
    t_step_flops += slots * (layer_work + out_b * per_byte(w_output) + attn_flops / eta_attn) / peak;
  }
  double t_hops = 0, t_hops_pre = 0;
  for (const auto& h : in.hops) {
    const double bw = std::max(1.0, h.bandwidth_bytes_per_s);
    if (h.rpc) {
      t_hops += sp.rpc_hop_s + sp.rpc_round_trips * h.latency_s + 4.0 * static_cast<double>(s.n_embd) / bw;
      t_hops_pre += sp.rpc_prefill_bytes * static_cast<double>(s.n_embd) / bw;
    } else {
      t_hops += sp.gpu_hop_s + h.latency_s + 4.0 * static_cast<double>(s.n_embd) / bw;
    }
  }
  // The output layer on an RPC device: llama-server reads the logits back over the network, 4 * n_vocab
  // bytes per output row (measured in network namespaces with tbf rate limits, docs/benchmarks.md: at
  // 100 Mbit/s a 152k vocabulary costs 50 ms per token, the cost that dominates small models over
  // slow links). Decode: one row per token; prefill: one row per prompt (at most a micro-batch apart).
  double t_logits = 0;
  if (output_slot < nd && in.devices[output_slot].remote) {
    double net_bw = 0;
    for (const auto& h : in.hops)
      if (h.rpc) net_bw = h.bandwidth_bytes_per_s;  // the last RPC hop: the return to the main machine
    if (net_bw > 0) t_logits = 4.0 * static_cast<double>(s.n_vocab) / net_bw;
    t_hops_pre += t_logits / std::max(1, in.n_ubatch);
  }
  if (in.row_split && nd > 1) {
    // -sm row: all GPUs read their rows of each matrix at once (the sum of reads shrinks to about
    // 0.55 + 0.45 / n of it: the split is uneven and small matrices stay whole), two all-reduces per
    // layer cross row_link; prefill pays the splits' synchronisation (row_prefill_factor).
    const double n = static_cast<double>(nd);
    const double sync = 2.0 * static_cast<double>(s.n_layer) *
                            (in.row_link.latency_s + 4.0 * static_cast<double>(s.n_embd) /
                                                         std::max(1.0, in.row_link.bandwidth_bytes_per_s)) +
                        static_cast<double>(s.n_layer) * sp.row_layer_sync_s;
    const double scale = 0.55 + 0.45 / n;
    t_dec = t_dec * scale + sync;
    t_step_mem = t_step_mem * scale + sync;
    t_pre = t_pre * sp.row_prefill_factor;
  }
  out.decode_bytes_per_token = bytes_tok;
  out.decode_tps = t_dec + t_hops + t_logits > 0 ? 1.0 / (t_dec + t_hops + t_logits) : 0;
  // Prefill runs in micro-batches: activations cross each GPU hop once per batch (negligible per
  // token); RPC hops carry them per token over the network.
  out.prefill_tps = t_pre + t_hops_pre > 0 ? 1.0 / (t_pre + t_hops_pre) : 0;
  const double t_step = std::max(t_step_mem, t_step_flops) + t_hops + slots * t_logits;
  out.aggregate_decode_tps = t_step > 0 ? slots / t_step : 0;
  return out;
}

}  // namespace agifarm::plan
