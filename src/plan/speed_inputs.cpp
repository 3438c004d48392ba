#include "plan/speed_inputs.hpp"

#include <algorithm>

namespace agifarm::plan {

compute_unit gpu_unit(const hw::gpu& g) {
  return {g.name, g.bandwidth_bytes_per_s > 0 ? g.bandwidth_bytes_per_s : k_default_gpu_bandwidth,
          (g.fp16_tflops > 0 ? g.fp16_tflops : k_default_gpu_fp16_tflops) * 1e12, false, g.generation};
}

compute_unit host_unit(const hw::node& n) {
  return {"host", n.ram_bandwidth_bytes_per_s > 0 ? n.ram_bandwidth_bytes_per_s : k_default_ram_bandwidth,
          n.cpu_peak_flops > 0 ? n.cpu_peak_flops : k_default_cpu_flops, true};
}

speed_input speed_inputs(const hw::inventory& inv, const model_shape& m, const memory_estimate& est,
                         const speed_placement& p) {
  const auto& all = p.gpus;
  auto gpu = [&](speed_placement::gpu_at r) -> const hw::gpu& { return inv.nodes[r.node].gpus[r.gpu]; };
  const auto& main = inv.nodes[p.main_node];
  speed_input si;
  si.shape = &m;
  si.placement = &est;
  for (auto r : all) {
    si.devices.push_back(gpu_unit(gpu(r)));
    si.devices.back().remote = r.node != p.main_node;  // logits of an output layer there cross the network
  }
  si.host = host_unit(main);
  si.slots = p.slots;
  si.depth = std::min<double>(static_cast<double>(p.ctx) / std::max(1, p.slots) / 2.0, 4096);
  if (!all.empty())  // op offload to the first GPU over its PCIe link (0 when the inventory does not say)
    si.offload_link_bytes_per_s =
        hw::gpu_pcie_link(inv.nodes[all[0].node].name, gpu(all[0])).bandwidth_bytes_per_s;
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {
    if (all[i].node != all[i + 1].node || all[i].node != p.main_node) {
      auto l = inv.between(inv.nodes[all[i].node].name, main.name);
      // RPC: network round trips and a fixed cost per graph split per token (speed_params)
      si.hops.push_back({l.bandwidth_bytes_per_s, l.latency_s, true});
    } else {
      auto l = inv.between_gpus(main.name, gpu(all[i]).index, gpu(all[i + 1]).index);
      si.hops.push_back({l.bandwidth_bytes_per_s, l.latency_s});
    }
  }
  // the last remote device also returns to the main node (remote devices come first)
  if (!all.empty() && all.front().node != p.main_node) {
    auto l = inv.between(inv.nodes[all.front().node].name, main.name);
    si.hops.push_back({l.bandwidth_bytes_per_s, l.latency_s, true});
  }
  if (p.row_split && all.size() > 1) {  // each layer's matrices on all GPUs at once; all-reduces per layer
    si.row_split = true;
    auto l = inv.between_gpus(main.name, gpu(all[0]).index, gpu(all[1]).index);
    si.row_link = {l.bandwidth_bytes_per_s, l.latency_s};
  }
  return si;
}

}  // namespace agifarm::plan
