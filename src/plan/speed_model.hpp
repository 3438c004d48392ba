// speed_model: predicted decode and prefill tokens/s of one placement (docs/planning.md, "Speed").
//
//   decode:  t_tok = sum_d (W_d + KV_d(depth)) / (eta_bw * BW_d)  +  hops * (latency + 4*n_embd / link_bw)
//            W_d = dense weight bytes on d + expert bytes on d * n_expert_used / n_expert
//   prefill: t_tok = sum_d F_d / (eta_flops * FLOPS_d)  (F_d = 2 * active parameters on d + attention)
//   N slots: one step reads the weights once for all N tokens (experts: the share N tokens touch) and
//            each slot's KV; the step is bound by max(memory time, compute time); aggregate = N / t_step.
//
// The efficiencies (eta) are calibrated against llama-bench on this machine for the CPU and set from
// published llama.cpp results for GPUs (docs/benchmarks.md). Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "plan/memory_model.hpp"

namespace agifarm::plan {

struct compute_unit {
  std::string name;
  double bandwidth_bytes_per_s = 0;  // memory bandwidth
  double flops = 0;                  // dense peak FLOP/s for the weight type (fp16 tensor for GPUs)
  bool is_cpu = false;
};

struct speed_link {
  double bandwidth_bytes_per_s = 0;
  double latency_s = 0;
};

struct speed_input {
  const model_shape* shape = nullptr;
  const memory_estimate* placement = nullptr;  // which layers / experts sit where
  std::vector<compute_unit> devices;           // same order as placement->devices
  compute_unit host;                           // the CPU and its RAM
  std::vector<speed_link> hops;                // one per device boundary a token crosses (RPC / PCIe)
  int slots = 1;
  double depth = 0;                            // tokens already in the context when decoding
};

struct speed_estimate {
  double decode_tps = 0;
  double prefill_tps = 0;
  double aggregate_decode_tps = 0;
  double decode_bytes_per_token = 0;  // weights + KV read for one token, all devices
};

// Efficiency factors (fraction of the peak reached by llama.cpp).
inline constexpr double k_eta_bw_gpu = 0.75;
inline constexpr double k_eta_flops_gpu = 0.35;
inline constexpr double k_eta_bw_cpu = 0.85;
inline constexpr double k_eta_flops_cpu = 0.45;
// Fixed cost per layer per decoded token (kernel launches, synchronisation), GPU and CPU.
inline constexpr double k_layer_overhead_gpu_s = 60e-6;
inline constexpr double k_layer_overhead_cpu_s = 20e-6;

speed_estimate estimate_speed(const speed_input& in);

}  // namespace agifarm::plan
