// shard_rpc: a layer split over every GPU of the farm, llama-server on the node with the most VRAM and
// ggml-rpc-server on the others.
#include <fmt/format.h>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

std::vector<placement> propose_shard_rpc(const planner_ctx& pc, const plan_model& m, const demand& dm) {
  const auto& inv = pc.inv;
  if (inv.nodes.size() < 2 || pc.all_gpus.size() < 2) return {};
  placement p;
  p.strategy = strategy::shard_rpc;
  int main = 0;
  for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
    if (inv.nodes[n].total_vram_bytes() > inv.nodes[main].total_vram_bytes()) main = n;
  p.main_node = main;
  for (auto r : pc.all_gpus) (r.node == main ? p.local : p.remote).push_back(r);
  p.slots = dm.agents;
  p.summary = fmt::format(
      "layer split over all {} GPUs of {} nodes: llama-server on {}, ggml-rpc-server on the others",
      pc.all_gpus.size(), inv.nodes.size(), inv.nodes[main].name);
  return {finish_placement(pc, m.shape, dm, std::move(p))};
}

}  // namespace agifarm::plan::detail
