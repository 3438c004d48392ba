// cpu: the whole model in system RAM, proposed only when the farm has no GPU.
#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

std::vector<placement> propose_cpu(const planner_ctx& pc, const plan_model& m, const demand& dm) {
  if (!pc.all_gpus.empty()) return {};
  placement p;
  p.strategy = strategy::cpu;
  p.main_node = 0;
  p.slots = dm.agents;
  p.summary = "CPU only: the whole model in system RAM";
  return {finish_placement(pc, m.shape, dm, std::move(p))};
}

}  // namespace agifarm::plan::detail
