#include "plan/speed_model.hpp"

#include <algorithm>
#include <cmath>

namespace agifarm::plan {

speed_estimate estimate_speed(const speed_input& in) {
  speed_estimate out;
  if (!in.shape || !in.placement) return out;
  const auto& s = *in.shape;
  const auto& p = *in.placement;
  const std::size_t nd = in.devices.size();
  const double used_share = s.is_moe() && s.n_expert ? static_cast<double>(s.n_expert_used) / s.n_expert : 1.0;
  const int slots = std::max(1, in.slots);
  // Share of an MoE layer's experts that N tokens touch: 1 - (1 - k/n)^N.
  const double batch_share = s.is_moe() ? 1.0 - std::pow(1.0 - used_share, slots) : 1.0;
  // Active parameters per token (for FLOPs): weight bytes scaled to parameters by the file's ratio.
  double total_w = 0;
  for (std::size_t i = 0; i <= nd && i < p.dense_weight_bytes.size(); ++i)
    total_w += static_cast<double>(p.dense_weight_bytes[i] + p.expert_weight_bytes[i]);
  const double params_per_byte = total_w > 0 ? static_cast<double>(s.n_params) / (total_w + s.bytes_of(gguf::tensor_class::token_embd)) : 0;

  double t_dec = 0, t_pre = 0, t_step_mem = 0, t_step_flops = 0, bytes_tok = 0;
  for (std::size_t i = 0; i <= nd && i < p.dense_weight_bytes.size(); ++i) {
    const compute_unit& u = i < nd ? in.devices[i] : in.host;
    const double dense = static_cast<double>(p.dense_weight_bytes[i]);
    const double expert = static_cast<double>(p.expert_weight_bytes[i]);
    const int layers = i < p.layers_on_device.size() ? p.layers_on_device[i] : 0;
    const double kv = static_cast<double>(p.kv_bytes_per_cell_layer) * layers * in.depth;
    if (dense + expert == 0 && layers == 0) continue;
    const double eta_bw = u.is_cpu ? k_eta_bw_cpu : k_eta_bw_gpu;
    const double eta_fl = u.is_cpu ? k_eta_flops_cpu : k_eta_flops_gpu;
    const double bw = std::max(1.0, u.bandwidth_bytes_per_s * eta_bw);
    const double fl = std::max(1.0, u.flops * eta_fl);
    const double read = dense + expert * used_share + kv;
    bytes_tok += read;
    const double overhead = layers * (u.is_cpu ? k_layer_overhead_cpu_s : k_layer_overhead_gpu_s);
    t_dec += read / bw + overhead;
    const double active_params = (dense + expert * used_share) * params_per_byte;
    const double attn_flops = 4.0 * static_cast<double>(s.n_head * s.head_dim_k) * layers * in.depth;
    t_pre += (2.0 * active_params + attn_flops) / fl;
    t_step_mem += (dense + expert * batch_share + kv * slots) / bw + overhead;
    t_step_flops += slots * (2.0 * active_params + attn_flops) / fl;
  }
  double t_hops = 0;
  for (const auto& h : in.hops)
    t_hops += h.latency_s + 4.0 * static_cast<double>(s.n_embd) / std::max(1.0, h.bandwidth_bytes_per_s);
  out.decode_bytes_per_token = bytes_tok;
  out.decode_tps = t_dec + t_hops > 0 ? 1.0 / (t_dec + t_hops) : 0;
  // Prefill runs in micro-batches: activations cross each hop once per batch, negligible per token.
  out.prefill_tps = t_pre > 0 ? 1.0 / t_pre : 0;
  const double t_step = std::max(t_step_mem, t_step_flops) + t_hops;
  out.aggregate_decode_tps = t_step > 0 ? slots / t_step : 0;
  return out;
}

}  // namespace agifarm::plan
