// speed_model: predicted decode and prefill tokens/s of one placement (docs/planning.md, "Speed").
//
//   decode:  t_tok = sum_d (W_d + KV_d(depth)) / (eta_bw * BW_d)  +  hops * (latency + 4*n_embd / link_bw)
//            W_d = dense weight bytes on d + expert bytes on d * n_expert_used / n_expert
//   prefill: t_tok = sum_d sum_type 2 * P_d,type / (eta(type) * FLOPS_d) + attention
//            (P = active parameters of the repeating layers; the output matrix runs for the last
//            prompt token only; CPU eta per weight type, MoE experts on the CPU k_cpu_expert_slowdown)
//   N slots: one step reads the weights once for all N tokens (experts: the share N tokens touch) and
//            each slot's KV; the step is bound by max(memory time, compute time); aggregate = N / t_step.
//
// The efficiencies (eta) are calibrated against llama-bench on this machine for the CPU and set from
// published llama.cpp results for GPUs (docs/benchmarks.md). Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
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
  // Op offload (llama.cpp's default on CUDA/ROCm): for micro-batches of >= 32 tokens the matmuls of
  // weights in system RAM run on the first device, their weights streamed over its link once per
  // micro-batch. 0: no op offload (--no-op-offload, no GPU, or the link is unknown).
  double offload_link_bytes_per_s = 0;
  int n_ubatch = 512;                          // -ub
};

struct speed_estimate {
  double decode_tps = 0;
  double prefill_tps = 0;
  double aggregate_decode_tps = 0;
  double decode_bytes_per_token = 0;  // weights + KV read for one token, all devices
};

// Efficiency factors (fraction of the peak reached by llama.cpp). CPU figures are calibrated with
// llama-bench on this project's machine (docs/benchmarks.md); GPU figures follow published llama.cpp
// CUDA results.
inline constexpr double k_eta_bw_gpu = 0.75;
inline constexpr double k_eta_flops_gpu = 0.35;
inline constexpr double k_eta_bw_cpu = 1.0;  // llama.cpp reads weights at the rate hw::measure_ram_bandwidth finds
// MoE expert matmuls on the CPU (ggml's mul_mat_id: gathering rows per expert, small matrices) run
// this many times slower per FLOP than a dense matmul of the same type.
inline constexpr double k_cpu_expert_slowdown = 2.05;
// Share of a PCIe link's nominal rate that op offload's weight streaming reaches: a 3090 streaming
// gpt-oss-120b's experts of 26 layers (--n-cpu-moe 26, -ub 512) prefilled at 380 tok/s, which is the
// nominal PCIe 4.0 x16 rate (data/gpu_measurements.yaml).
inline constexpr double k_eta_offload_link = 1.0;
inline constexpr int k_op_offload_min_batch = 32;  // ggml-cuda's offload_op threshold
// Fixed cost per layer per decoded token (kernel launches, synchronisation), GPU and CPU.
inline constexpr double k_layer_overhead_gpu_s = 60e-6;
inline constexpr double k_layer_overhead_cpu_s = 20e-6;

// Fraction of the FP32 FMA peak llama.cpp's CPU matmul kernels reach in prefill for a weight type
// ("Q4_K", "F16", ...); unknown types get a conservative figure.
double cpu_matmul_efficiency(std::string_view ggml_type_name);

speed_estimate estimate_speed(const speed_input& in);

}  // namespace agifarm::plan
