// expert_offload (MoE only): the biggest GPU, and all GPUs of the best node, each with the experts of
// the fewest (biggest) layers in system RAM. A variant that needs no offload is left out: it is the
// plain replica or shard.
#include <fmt/format.h>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

std::vector<placement> propose_expert_offload(const planner_ctx& pc, const plan_model& m, const demand& dm) {
  if (!m.shape.is_moe()) return {};
  std::vector<placement> variants;
  if (!pc.all_gpus.empty()) {
    gpu_ref best = biggest_gpu(pc);
    placement p;
    p.main_node = best.node;
    p.local = {best};
    variants.push_back(p);
  }
  if (pc.best_node >= 0) {
    placement p;
    p.main_node = pc.best_node;
    p.local = gpus_of_node(pc.inv, pc.best_node);
    variants.push_back(p);
  }
  std::vector<placement> out;
  for (auto& p : variants) {
    p.strategy = strategy::expert_offload;
    p.slots = dm.agents;
    p.ctx = copy_ctx(dm, p.slots);
    bool ok = choose_expert_offload(pc, m.shape, p);
    p.summary = fmt::format("{} GPU{}, experts of {} of {} layers in system RAM{}", p.local.size(),
                            p.local.size() == 1 ? "" : "s", p.est.expert_layers_on_host, m.shape.n_layer,
                            ok ? "" : " (not enough even with all experts in RAM)");
    if (ok && p.est.expert_layers_on_host == 0) continue;  // same as a plain shard / replica
    p.max_ctx = find_max_ctx(pc, m.shape, p);              // at the offload chosen for the asked context
    if (!p.fits) p.fix = fix_for(pc, m.shape, p);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace agifarm::plan::detail
