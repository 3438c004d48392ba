// A placement as a ranked candidate of the plan document: predictions per device, pros and cons of its
// strategy, and the score candidates are ranked by.
#include <fmt/format.h>

#include <algorithm>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

namespace {

void describe(const placement& p, doc_candidate& c) {
  switch (p.strategy) {
    case strategy::replica:
      c.pros = {"fastest per token: no inter-GPU traffic", "agents run in parallel on separate copies",
                "simple to run"};
      c.cons = {"each copy must fit one GPU: less context per copy", "no memory shared between copies"};
      break;
    case strategy::shard:
      c.pros = {"fits models larger than one GPU", "long contexts: KV spread over all GPUs"};
      c.cons = {"layers run one GPU after the other: one copy's speed is bound by the sum of reads",
                "a PCIe hop per GPU boundary"};
      if (p.row_split) c.pros.push_back("row split over NVLink: GPUs read in parallel");
      break;
    case strategy::shard_rpc:
      c.pros = {"the biggest models across machines", "uses every GPU of the farm"};
      c.cons = {"network round trips per token (RPC)", "every node must be up"};
      break;
    case strategy::expert_offload:
      c.pros = {"a huge MoE on little VRAM",
                fmt::format("{} of {} expert layers stay on GPU", p.expert_layers_on_gpu,
                            p.est.layer_device.size() - 1)};
      c.cons = {"decode bound by system RAM bandwidth for offloaded experts", "needs plenty of RAM"};
      break;
    case strategy::cpu:
    case strategy::hybrid:
      break;
  }
}

// Fewer moving parts rank higher at equal speed.
double simplicity(strategy s) {
  switch (s) {
    case strategy::replica:
      return 1.0;
    case strategy::expert_offload:
      return 0.9;
    case strategy::shard:
      return 0.85;
    default:
      return 0.6;
  }
}

}  // namespace

doc_candidate to_candidate(const std::string& model, const demand& dm, const placement& p) {
  doc_candidate c;
  c.model = model;
  for (std::size_t i = 0; i < dm.roles.size(); ++i) c.role += (i ? "," : "") + dm.roles[i];
  c.strategy = std::string(to_string(p.strategy));
  c.summary = p.summary;
  c.feasible = p.fits;
  c.why_not = p.fits ? "" : p.why_not;
  c.fix = p.fits ? "" : p.fix;
  for (std::size_t i = 0; i < p.dev_names.size() && i < p.est.devices.size(); ++i) {
    auto d = p.est.devices[i];
    d.name = p.dev_names[i];
    c.devices.push_back(d);
    c.device_capacity_bytes.push_back(p.caps[i]);
  }
  auto h = p.est.host;
  h.name = "host";
  c.devices.push_back(h);
  c.device_capacity_bytes.push_back(p.host_cap);
  c.decode_tps = p.speed.decode_tps;
  c.prefill_tps = p.speed.prefill_tps;
  c.aggregate_decode_tps = p.speed.aggregate_decode_tps;
  c.max_ctx = p.max_ctx;
  c.agents = p.fits ? p.slots * p.replicas : 0;
  describe(p, c);
  // ranking: speed for the agents, fewer moving parts better; infeasible last
  const double per_agent = static_cast<double>(p.ctx) / std::max(1, p.slots);
  double ctx_ok = p.max_ctx >= per_agent ? 1.0 : static_cast<double>(p.max_ctx) / std::max(1.0, per_agent);
  c.score = p.fits ? (c.decode_tps + 0.5 * c.aggregate_decode_tps) * simplicity(p.strategy) * ctx_ok : 0;
  return c;
}

}  // namespace agifarm::plan::detail
