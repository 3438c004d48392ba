// speed_model: predicted decode and prefill tokens/s of one placement (docs/planning.md, "Speed").
//
//   decode:  t_tok = sum_d (W_d + KV_d(depth)) / (eta_bw(gen_d) * BW_d) + layers_d * t_layer
//                  + host expert layers * t_host_layer + hops (latency, bytes; RPC and GPU-to-GPU costs)
//            W_d = dense weight bytes on d + expert bytes on d * n_expert_used / n_expert
//            (experts in system RAM: read at eta_host_expert * the host's bandwidth)
//   prefill: t_tok = sum_d sum_type 2 * P_d,type / (eta_flops(gen_d) * f(type) * FLOPS_d) + attention
//            + weights read and layers * t_layer paid once per micro-batch
//            (+ 4 bytes per quantized weight per micro-batch on the dequantize+cuBLAS path)
//            (P = active parameters of the repeating layers; the output matrix runs for the last
//            prompt token only; CPU eta per weight type, MoE experts on the CPU k_cpu_expert_slowdown;
//            op offload streams host weights over the first GPU's link once per micro-batch)
//   N slots: one step reads the weights once for all N tokens (experts: the share N tokens touch) and
//            each slot's KV; the step is bound by max(memory time, compute time); aggregate = N / t_step.
//
// The efficiencies are plain data (speed_params). CPU figures are calibrated with llama-bench on this
// project's machine; the GPU, expert-offload, multi-GPU and RPC figures are fitted by `agifarm
// calibrate` on the fit rows of data/gpu_measurements.yaml (docs/benchmarks.md gives the error on the
// holdout rows). Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plan/memory_model.hpp"

namespace agifarm::plan {

struct compute_unit {
  std::string name;
  double bandwidth_bytes_per_s = 0;  // memory bandwidth
  double flops = 0;                  // dense peak FLOP/s for the weight type (fp16 tensor for GPUs)
  bool is_cpu = false;
  std::string generation;  // GPU generation of the catalogue ("ampere", "ada", ...); "" unknown
  // Behind ggml-rpc-server on another machine. When the output layer sits on such a device, every
  // token's logits (n_vocab floats) cross the network back to llama-server (docs/planning.md).
  bool remote = false;

  compute_unit() = default;
  compute_unit(std::string name_, double bandwidth, double flops_, bool is_cpu_, std::string generation_ = {})
      : name(std::move(name_)),
        bandwidth_bytes_per_s(bandwidth),
        flops(flops_),
        is_cpu(is_cpu_),
        generation(std::move(generation_)) {}
};

struct speed_link {
  double bandwidth_bytes_per_s = 0;
  double latency_s = 0;  // one way
  bool rpc = false;      // a ggml-rpc hop: several network round trips and a fixed cost per token
};

// The fitted constants of the GPU side of the model (`agifarm calibrate` fits them; the defaults are
// its result on the fit rows, see default_speed_params()).
struct speed_params {
  struct generation_eta {
    std::string generation;
    double bw = 0;     // decode: share of the memory bandwidth reached
    double flops = 0;  // prefill: share of the dense FP16 peak reached (Q4_K matmuls)
  };
  struct type_factor {
    std::string type;   // ggml type name of the weights ("Q4_K")
    double factor = 1;  // prefill speed of this type relative to Q4_K on GPUs
  };
  std::vector<generation_eta> generations;
  double eta_bw_gpu = 0.75;  // a generation not in the table
  double eta_flops_gpu = 0.35;
  std::vector<type_factor> gpu_types;   // types not listed: 1
  double gpu_expert_flops = 1.0;        // MoE expert matmuls (mul_mat_id) relative to dense ones, GPU
  double layer_overhead_gpu_s = 60e-6;  // per layer per decoded token (launches, synchronisation)
  double eta_host_expert = 1.0;         // experts in RAM: share of the host's bandwidth decode reaches
  double host_expert_layer_s = 0;       // experts in RAM: per such layer per token (GPU<->CPU handover)
  double eta_offload_link = 1.0;        // op offload: share of the PCIe link's nominal rate
  double gpu_hop_s = 0;                 // layer split: per GPU-to-GPU boundary per token
  double rpc_hop_s = 0;                 // RPC: fixed cost per hop per token (commands, graph split)
  double rpc_round_trips = 4;           // RPC: network one-way latencies per hop per token
  double rpc_prefill_bytes = 4;         // RPC prefill: bytes per n_embd element per token per hop
  double row_layer_sync_s = 0;          // -sm row: per layer per token on top of two all-reduces
  double row_prefill_factor = 1.0;      // -sm row: prefill time relative to one GPU doing all of it
  // GPU decode of MoE experts (mul_mat_id): share of the dense bandwidth share reached while reading
  // the n_expert_used small matrices of a layer (an id gather and one kernel per expert matrix).
  double gpu_expert_bw = 1.0;
  // Quantized weights in GPU prefill go through dequantize-to-F16 + cuBLAS (true: builds before
  // llama.cpp's int8 tensor-core MMQ became the default in mid 2024): each micro-batch writes every
  // quantized weight as F16 and the GEMM reads it back, 4 bytes per weight per micro-batch.
  bool dequant_to_f16 = false;

  double eta_bw(std::string_view generation) const;
  double eta_flops(std::string_view generation) const;
  double type_factor_of(std::string_view type) const;
};
// The calibrated figures (docs/planning.md lists them).
const speed_params& default_speed_params();

struct speed_input {
  const model_shape* shape = nullptr;
  const memory_estimate* placement = nullptr;  // which layers / experts sit where
  std::vector<compute_unit> devices;           // same order as placement->devices
  compute_unit host;                           // the CPU and its RAM
  std::vector<speed_link> hops;                // one per device boundary a token crosses (RPC / PCIe)
  int slots = 1;
  double depth = 0;  // tokens already in the context when decoding
  // Op offload (llama.cpp's default on CUDA/ROCm): for micro-batches of >= 32 tokens the matmuls of
  // weights in system RAM run on the first device, their weights streamed over its link once per
  // micro-batch. 0: no op offload (--no-op-offload, no GPU, or the link is unknown).
  double offload_link_bytes_per_s = 0;
  int n_ubatch = 512;  // -ub (a shorter prompt: its length)
  // -sm row over several GPUs: each layer's matrices are read by all GPUs at once (decode), with two
  // all-reduces per layer over row_link.
  bool row_split = false;
  speed_link row_link{};
  const speed_params* params = nullptr;  // nullptr: default_speed_params()
};

struct speed_estimate {
  double decode_tps = 0;
  double prefill_tps = 0;
  double aggregate_decode_tps = 0;
  double decode_bytes_per_token = 0;  // weights + KV read for one token, all devices
};

// Efficiency factors (fraction of the peak reached by llama.cpp). CPU figures are calibrated with
// llama-bench on this project's machine (docs/benchmarks.md). GPU figures: speed_params; these two are
// its figures for a GPU of unknown generation, and the per-layer overhead its default.
inline constexpr double k_eta_bw_gpu = 0.75;
inline constexpr double k_eta_flops_gpu = 0.35;
inline constexpr double k_eta_bw_cpu =
    1.0;  // llama.cpp reads weights at the rate hw::measure_ram_bandwidth finds
// MoE expert matmuls on the CPU (ggml's mul_mat_id: gathering rows per expert, small matrices) run
// this many times slower per FLOP than a dense matmul of the same type.
inline constexpr double k_cpu_expert_slowdown = 2.05;
inline constexpr int k_op_offload_min_batch = 32;  // ggml-cuda's offload_op threshold
// Fixed cost per layer per decoded token (kernel launches, synchronisation), GPU and CPU.
inline constexpr double k_layer_overhead_gpu_s = 60e-6;
inline constexpr double k_layer_overhead_cpu_s = 20e-6;

// Fraction of the FP32 FMA peak llama.cpp's CPU matmul kernels reach in prefill for a weight type
// ("Q4_K", "F16", ...); unknown types get a conservative figure.
double cpu_matmul_efficiency(std::string_view ggml_type_name);

speed_estimate estimate_speed(const speed_input& in);

}  // namespace agifarm::plan
