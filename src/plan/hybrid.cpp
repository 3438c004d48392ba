// Several models on one farm (the hybrid deployment): each model, biggest first, on the fewest free GPUs
// that hold it, then MoE experts in RAM on the node with the most free VRAM, then system RAM; spare
// GPUs become extra replicas of a model that fits one GPU.
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "plan/planner_internal.hpp"

namespace agifarm::plan::detail {

namespace {

struct gpu_pool {
  const planner_ctx& pc;
  std::vector<bool> used;

  void take(const placement& p) {
    for (auto r : p.local)
      for (std::size_t i = 0; i < pc.all_gpus.size(); ++i)
        if (pc.all_gpus[i].node == r.node && pc.all_gpus[i].gpu == r.gpu) used[i] = true;
  }
  // The free GPUs of node n, biggest first.
  std::vector<gpu_ref> free_on(int n) const {
    std::vector<gpu_ref> free;
    for (std::size_t i = 0; i < pc.all_gpus.size(); ++i)
      if (!used[i] && pc.all_gpus[i].node == n) free.push_back(pc.all_gpus[i]);
    std::sort(free.begin(), free.end(), [&](gpu_ref a, gpu_ref b) {
      return gpu_of(pc.inv, a).vram_bytes > gpu_of(pc.inv, b).vram_bytes;
    });
    return free;
  }
};

// 1) the fewest free GPUs of one node that hold the whole model
std::optional<placement> on_fewest_gpus(const gpu_pool& pool, const model_shape& m, const demand& dm) {
  const auto& pc = pool.pc;
  for (std::size_t k = 1; k <= pc.all_gpus.size(); ++k) {
    for (int n = 0; n < static_cast<int>(pc.inv.nodes.size()); ++n) {
      auto free = pool.free_on(n);
      if (free.size() < k) continue;
      placement p;
      p.strategy = k == 1 ? strategy::replica : strategy::shard;
      p.main_node = n;
      p.local.assign(free.begin(), free.begin() + static_cast<long>(k));
      p.slots = dm.agents;
      p.ctx = copy_ctx(dm, p.slots);
      evaluate(pc, m, p);
      if (p.fits) return p;
    }
  }
  return std::nullopt;
}

// 2) MoE: all free GPUs of the node with the most free VRAM, experts of the biggest layers in RAM
std::optional<placement> with_experts_in_ram(const gpu_pool& pool, const model_shape& m, const demand& dm) {
  const auto& pc = pool.pc;
  if (!m.is_moe()) return std::nullopt;
  int bestn = -1;
  std::uint64_t best_free = 0;
  for (int n = 0; n < static_cast<int>(pc.inv.nodes.size()); ++n) {
    std::uint64_t f = 0;
    for (auto r : pool.free_on(n)) f += gpu_of(pc.inv, r).vram_bytes;
    if (f > best_free) {
      best_free = f;
      bestn = n;
    }
  }
  if (bestn < 0) return std::nullopt;
  placement p;
  p.strategy = strategy::expert_offload;
  p.main_node = bestn;
  p.local = pool.free_on(bestn);
  p.slots = dm.agents;
  p.ctx = copy_ctx(dm, p.slots);
  if (choose_expert_offload(pc, m, p)) return p;
  return std::nullopt;
}

// 3) system RAM of the node with the most RAM
std::optional<placement> in_system_ram(const planner_ctx& pc, const model_shape& m, const demand& dm) {
  int bestn = 0;
  for (int n = 0; n < static_cast<int>(pc.inv.nodes.size()); ++n)
    if (pc.inv.nodes[n].ram_bytes > pc.inv.nodes[bestn].ram_bytes) bestn = n;
  placement p;
  p.strategy = strategy::cpu;
  p.main_node = bestn;
  p.slots = dm.agents;
  p.ctx = copy_ctx(dm, p.slots);
  if (!pc.inv.nodes.empty()) evaluate(pc, m, p);
  if (p.fits) return p;
  return std::nullopt;
}

// Spare GPUs: each one an extra replica of the first chosen single-GPU model whose copy fits it.
void add_spare_replicas(gpu_pool& pool, const std::vector<plan_model>& models,
                        std::vector<chosen_placement>& chosen) {
  const auto& pc = pool.pc;
  for (std::size_t i = 0; i < pc.all_gpus.size(); ++i) {
    if (pool.used[i]) continue;
    for (auto& c : chosen) {
      if (c.p.local.size() != 1 || !c.p.remote.empty()) continue;
      placement q = c.p;
      q.local = {pc.all_gpus[i]};
      q.main_node = pc.all_gpus[i].node;
      q.ot.clear();
      evaluate(pc, model_by_name(models, c.model).shape, q);
      if (q.fits) {
        pool.used[i] = true;
        c.p.replicas += 1;
        chosen.push_back({c.model, q});
        chosen.back().p.replicas = 0;  // marks an extra copy
        break;
      }
    }
  }
}

}  // namespace

std::vector<chosen_placement> choose_hybrid(const planner_ctx& pc, const std::vector<plan_model>& models,
                                            const std::vector<std::string>& biggest_first,
                                            std::map<std::string, demand>& demands,
                                            std::vector<std::string>& warnings) {
  gpu_pool pool{pc, std::vector<bool>(pc.all_gpus.size(), false)};
  std::vector<chosen_placement> chosen;
  for (const auto& name : biggest_first) {
    const auto& m = model_by_name(models, name).shape;
    const demand& dm = demands[name];
    auto p = on_fewest_gpus(pool, m, dm);
    if (!p) p = with_experts_in_ram(pool, m, dm);
    if (!p) p = in_system_ram(pc, m, dm);
    if (!p) {
      warnings.push_back(
          fmt::format("{} does not fit anywhere left after the bigger models (GPUs, experts in RAM, "
                      "or system RAM); it is not deployed",
                      name));
      continue;
    }
    pool.take(*p);
    p->max_ctx = static_cast<int>(p->ctx / std::max(1, p->slots));
    chosen.push_back({name, std::move(*p)});
  }
  add_spare_replicas(pool, models, chosen);
  return chosen;
}

doc_candidate hybrid_candidate(const std::vector<chosen_placement>& chosen) {
  doc_candidate h;
  h.strategy = std::string(to_string(strategy::hybrid));
  h.feasible = true;
  h.model = "*";
  std::map<std::string, int> copies;
  for (const auto& c : chosen) copies[c.model] += 1;
  for (const auto& [name, n] : copies)
    h.summary += fmt::format("{}{} x{}", h.summary.empty() ? "" : ", ", name, n);
  for (const auto& c : chosen) {
    for (std::size_t i = 0; i < c.p.dev_names.size(); ++i) {
      auto d = c.p.est.devices[i];
      d.name = c.p.dev_names[i] + " (" + c.model + ")";
      h.devices.push_back(d);
      h.device_capacity_bytes.push_back(c.p.caps[i]);
    }
    h.aggregate_decode_tps += c.p.speed.aggregate_decode_tps / std::max(1, c.p.replicas);
    h.agents += c.p.slots;
    h.decode_tps = std::max(h.decode_tps, c.p.speed.decode_tps);
    h.prefill_tps = std::max(h.prefill_tps, c.p.speed.prefill_tps);
  }
  h.max_ctx = 0;
  h.pros = {"every role served at once: a sharded core for deep work, helpers for fast agents",
            "each model on the fewest GPUs that hold it"};
  h.cons = {"more processes to run", "each model gets only part of the farm"};
  h.score = 1e9;  // the only candidate that serves all models at once
  return h;
}

}  // namespace agifarm::plan::detail
