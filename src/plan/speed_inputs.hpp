// speed_inputs: the speed model's inputs (speed_model.hpp) built from an inventory, in one place for
// the planner, `agifarm estimate --speed` and the farm's CPU predictions, so that all three use the
// same figures and the same defaults where the inventory lacks one. Pure functions, thread-safe.
#pragma once

#include <vector>

#include "hw/hw.hpp"
#include "plan/speed_model.hpp"

namespace agifarm::plan {

// Defaults for a figure the inventory lacks (plan warnings name the host ones: "speeds are rough").
inline constexpr double k_default_gpu_bandwidth = 500e9;  // bytes/s
inline constexpr double k_default_gpu_fp16_tflops = 30;
inline constexpr double k_default_ram_bandwidth = 40e9;  // bytes/s
inline constexpr double k_default_cpu_flops = 5e11;      // FLOP/s

compute_unit gpu_unit(const hw::gpu& g);
compute_unit host_unit(const hw::node& n);

// Where a placement's devices sit: GPUs in llama.cpp's order (RPC devices first), the node running
// llama-server, and how the copy is run.
struct speed_placement {
  struct gpu_at {
    int node = 0;  // index into inventory::nodes
    int gpu = 0;   // index into node::gpus
  };
  std::vector<gpu_at> gpus;
  int main_node = 0;
  bool row_split = false;
  int slots = 1;
  long ctx = 0;  // the copy's KV pool: decode is predicted at half a slot's share (up to 4096)
};

// The speed model's input for `est` placed as `p` on `inv`: units from gpu_unit / host_unit, links
// between devices from the inventory (RPC hops across nodes), op offload over the first GPU's PCIe
// link. The result points at `m` and `est`: they must outlive it.
speed_input speed_inputs(const hw::inventory& inv, const model_shape& m, const memory_estimate& est,
                         const speed_placement& p);

}  // namespace agifarm::plan
