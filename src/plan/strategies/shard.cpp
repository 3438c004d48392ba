// shard: a layer split over the GPUs of the node with the most VRAM (>= 2 GPUs), and a row split too
// when that node's GPUs are NVLinked.
#include <fmt/format.h>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

std::vector<placement> propose_shard(const planner_ctx& pc, const plan_model& m, const demand& dm) {
  if (pc.best_node < 0) return {};
  const auto& node = pc.inv.nodes[pc.best_node];
  placement p;
  p.strategy = strategy::shard;
  p.main_node = pc.best_node;
  p.local = gpus_of_node(pc.inv, pc.best_node);
  p.slots = dm.agents;
  p.summary = fmt::format("layer split over the {} GPUs of {}", p.local.size(), node.name);
  std::vector<placement> out{finish_placement(pc, m.shape, dm, p)};
  bool nvlink = false;
  for (const auto& l : pc.inv.links)
    nvlink = nvlink || (l.kind == hw::link_kind::nvlink && l.node_a == node.name);
  if (nvlink) {
    placement r = p;
    r.row_split = true;
    r.summary = fmt::format("row split over the {} NVLinked GPUs of {}", p.local.size(), node.name);
    out.push_back(finish_placement(pc, m.shape, dm, std::move(r)));
  }
  return out;
}

}  // namespace agifarm::plan::detail
