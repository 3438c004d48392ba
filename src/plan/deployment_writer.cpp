// The deployment (backends, pools) and the recommendation of a plan, from the chosen placements.
#include <fmt/format.h>

#include <algorithm>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

namespace {

// The GPUs a single model's replica runs copies on: every GPU that holds the copy evaluated on the
// biggest one, up to its replica count. Empty for other strategies and for hybrids (one copy each).
std::vector<gpu_ref> replica_gpus(const planner_ctx& pc, const model_shape& m, const placement& p,
                                  bool single_model) {
  std::vector<gpu_ref> out;
  if (p.strategy != strategy::replica || !single_model) return out;
  const int copies = std::max(1, p.replicas);
  for (auto r : pc.all_gpus) {
    placement q = p;
    q.local = {r};
    q.main_node = r.node;
    evaluate(pc, m, q);
    if (q.fits && static_cast<int>(out.size()) < copies) out.push_back(r);
  }
  return out;
}

// ggml-rpc-server backends for q's remote GPUs (their names are llama-server's dependencies).
std::vector<std::string> add_rpc_servers(const planner_ctx& pc, const placement& q, const std::string& bname,
                                         plan_document& doc) {
  const auto& inv = pc.inv;
  std::vector<std::string> deps;
  for (auto r : q.remote) {
    backend_spec rs;
    rs.kind = backend_kind::rpc_server;
    rs.name = fmt::format("rpc-{}-gpu{}-{}", inv.nodes[r.node].name, gpu_of(inv, r).index, bname);
    rs.node = inv.nodes[r.node].name;
    rs.gpus = {gpu_of(inv, r).index};
    rs.host = inv.nodes[r.node].address;
    rs.port = pc.opt.rpc_base_port + r.gpu;
    rs.env["CUDA_VISIBLE_DEVICES"] = std::to_string(gpu_of(inv, r).index);
    deps.push_back(rs.name);
    doc.chosen.backends.push_back(rs);
  }
  return deps;
}

backend_spec llama_server_backend(const planner_ctx& pc, const plan_model& m, const placement& q,
                                  const std::string& bname) {
  const auto& inv = pc.inv;
  backend_spec b;
  b.name = bname;
  b.node = inv.nodes.empty() ? "local" : inv.nodes[q.main_node].name;
  b.model = m.name;
  b.model_file = m.shape.file;
  std::string vis;
  for (auto r : q.local) {
    b.gpus.push_back(gpu_of(inv, r).index);
    vis += (vis.empty() ? "" : ",") + std::to_string(gpu_of(inv, r).index);
  }
  if (!vis.empty())
    b.env[gpu_of(inv, q.local[0]).vendor == hw::gpu_vendor::amd ? "HIP_VISIBLE_DEVICES"
                                                                : "CUDA_VISIBLE_DEVICES"] = vis;
  b.args = server_argv(pc, m.shape, q);
  b.slots = q.slots;
  b.ctx = static_cast<int>(q.ctx);
  backend_prediction pr;
  for (std::size_t i = 0; i < q.dev_names.size() && i < q.est.devices.size(); ++i) {
    auto d = q.est.devices[i];
    d.name = q.dev_names[i];
    pr.devices.push_back(d);
  }
  pr.host = q.est.host;
  pr.decode_tps = q.speed.decode_tps;
  pr.prefill_tps = q.speed.prefill_tps;
  pr.aggregate_decode_tps = q.speed.aggregate_decode_tps;
  b.predicted = pr;
  return b;
}

// Why the single model's candidate c (placed as `chosen`) is recommended, and its runner-up.
void explain_single(const plan_document& doc, const doc_candidate& c, const chosen_placement& chosen,
                    const demand& dm, doc_recommendation& rec) {
  rec.reasons.push_back(fmt::format("{}: {:.0f} tok/s per agent, {:.0f} tok/s with all {} agents busy",
                                    c.summary, c.decode_tps, c.aggregate_decode_tps, c.agents));
  rec.reasons.push_back(
      fmt::format("context up to {} tokens per agent with all agents at it; asked up to {} (one shared KV "
                  "pool of {} tokens per copy)",
                  c.max_ctx, dm.ctx, chosen.p.ctx));
  switch (chosen.p.strategy) {
    case strategy::replica:
      rec.reasons.push_back("the model fits one GPU: copies avoid inter-GPU traffic");
      break;
    case strategy::expert_offload:
      rec.reasons.push_back("the model does not fit the GPUs whole; experts of the biggest layers go to RAM");
      break;
    case strategy::shard:
    case strategy::shard_rpc:
      rec.reasons.push_back("the model needs the memory of several GPUs");
      break;
    default:
      break;
  }
  // runner-up: the best feasible candidate of another strategy; the score is linear in the
  // predicted tokens/s, so score ratio - 1 is the speed it would have to gain to win
  int ru = -1;
  for (std::size_t i = 0; i < doc.candidates.size(); ++i) {
    const auto& o = doc.candidates[i];
    if (!o.feasible || o.score <= 0 || o.strategy == c.strategy || o.model != c.model) continue;
    if (ru < 0 || o.score > doc.candidates[ru].score) ru = static_cast<int>(i);
  }
  if (ru < 0) return;
  const auto& o = doc.candidates[ru];
  const double gain = c.score / o.score - 1.0;
  rec.runner_up = o.strategy;
  rec.runner_up_candidate = ru;
  rec.runner_up_gain = gain;
  if (gain <= 0)
    rec.reasons.push_back(fmt::format("runner-up: {} ranks as high ({})", o.strategy, o.summary));
  else
    rec.reasons.push_back(
        fmt::format("runner-up: {}, would need {:+.0f} % decode tok/s to win{}", o.strategy, 100 * gain,
                    gain < 0.2 ? " (within the speed model's ±20 % decode error: measure both)" : ""));
}

}  // namespace

void write_deployment(const planner_ctx& pc, const std::vector<plan_model>& models,
                      const std::vector<chosen_placement>& chosen, std::map<std::string, demand>& demands,
                      std::size_t n_roles, plan_document& doc) {
  const bool single_model = demands.size() == 1;
  std::map<std::string, int> counter;
  std::map<std::string, std::vector<std::string>> pool_backends;
  for (const auto& c : chosen) {
    const auto& m = model_by_name(models, c.model);
    auto copy_gpus = replica_gpus(pc, m.shape, c.p, single_model);
    int n_copies = copy_gpus.empty() ? 1 : static_cast<int>(copy_gpus.size());
    for (int k = 0; k < n_copies; ++k) {
      placement q = c.p;
      if (!copy_gpus.empty()) {
        q.local = {copy_gpus[k]};
        q.main_node = copy_gpus[k].node;
      }
      q.replicas = 1;
      evaluate(pc, m.shape, q);
      std::string bname = fmt::format("{}-{}", c.model, counter[c.model]++);
      auto deps = add_rpc_servers(pc, q, bname, doc);
      backend_spec b = llama_server_backend(pc, m, q, bname);
      b.depends_on = deps;
      doc.chosen.backends.push_back(b);
      pool_backends[c.model].push_back(bname);
    }
  }
  for (const auto& [name, bs] : pool_backends) {
    pool_spec ps;
    ps.name = name;
    ps.aliases = demands[name].roles;
    ps.backends = bs;
    ps.balance =
        demands[name].agents > 1 ? balance_policy::prefix_affinity : balance_policy::least_outstanding;
    ps.priority = demands[name].priority;
    doc.chosen.pools.push_back(ps);
  }
  doc.chosen.strategy = std::string(to_string(single_model ? chosen.front().p.strategy : strategy::hybrid));
  // recommendation: the first (best ranked) feasible candidate of the deployed strategy
  int idx = -1;
  for (std::size_t i = 0; i < doc.candidates.size(); ++i)
    if (doc.candidates[i].feasible && doc.candidates[i].strategy == doc.chosen.strategy &&
        (!single_model || doc.candidates[i].model == chosen.front().model)) {
      idx = static_cast<int>(i);
      break;
    }
  doc.recommendation.strategy = doc.chosen.strategy;
  doc.recommendation.candidate = idx;
  if (idx < 0) return;
  const auto& c = doc.candidates[idx];
  if (!single_model) {
    doc.recommendation.reasons.push_back(fmt::format("{} of {} models deployed for {} roles at once: {}",
                                                     pool_backends.size(), demands.size(), n_roles,
                                                     c.summary));
    doc.recommendation.reasons.push_back(
        "each model sits on the fewest GPUs that hold it at its context; spare GPUs add replicas");
  } else {
    explain_single(doc, c, chosen.front(), demands.begin()->second, doc.recommendation);
  }
}

}  // namespace agifarm::plan::detail
