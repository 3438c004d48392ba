// replica: one copy of the model on each GPU that holds it; the agents spread over the copies. The
// copy is evaluated on the biggest GPU.
#include <fmt/format.h>

#include <algorithm>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

std::vector<placement> propose_replica(const planner_ctx& pc, const plan_model& m, const demand& dm) {
  if (pc.all_gpus.empty()) return {};
  gpu_ref best = biggest_gpu(pc);
  placement p;
  p.strategy = strategy::replica;
  p.main_node = best.node;
  p.local = {best};
  p.slots = dm.agents;
  p.ctx = copy_ctx(dm, p.slots);
  evaluate(pc, m.shape, p);
  // with the agents spread, each copy needs fewer slots; count GPUs that fit one copy of one slot
  placement one = p;
  one.slots = 1;
  one.ctx = copy_ctx(dm, 1);
  evaluate(pc, m.shape, one);
  std::uint64_t need1 = one.est.devices.empty() ? 0 : one.est.devices[0].total_bytes;
  int copies = 0;
  for (auto r : pc.all_gpus)
    if (gpu_of(pc.inv, r).vram_bytes >= need1 + pc.opt.device_margin_bytes) ++copies;
  p.replicas = std::max(1, std::min(copies, dm.agents > 0 ? std::max(copies, 1) : 1));
  p.slots = std::max(1, (dm.agents + p.replicas - 1) / p.replicas);
  p.summary = fmt::format("{} cop{} (one per GPU), {} agent slot{} each", p.replicas,
                          p.replicas == 1 ? "y" : "ies", p.slots, p.slots == 1 ? "" : "s");
  return {finish_placement(pc, m.shape, dm, std::move(p))};
}

}  // namespace agifarm::plan::detail
