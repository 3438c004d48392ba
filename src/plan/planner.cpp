#include "plan/planner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <numeric>

#include "plan/planner_internal.hpp"

namespace agifarm::plan {

namespace detail {

std::span<const strategy_entry> single_model_strategies() {
  static constexpr std::array<strategy_entry, 5> k_strategies{{
      {strategy::replica, propose_replica},
      {strategy::shard, propose_shard},
      {strategy::shard_rpc, propose_shard_rpc},
      {strategy::expert_offload, propose_expert_offload},
      {strategy::cpu, propose_cpu},
  }};
  return k_strategies;
}

}  // namespace detail

namespace {

using namespace detail;

void copy_inventory(const hw::inventory& inv, plan_document& doc) {
  for (const auto& n : inv.nodes) {
    doc_node dn{n.name, n.address, {}, n.cpu_cores, n.ram_bytes, n.ram_bandwidth_bytes_per_s};
    for (const auto& g : n.gpus)
      dn.gpus.push_back({g.index, g.name, std::string(hw::to_string(g.vendor)), g.vram_bytes,
                         g.bandwidth_bytes_per_s, g.fp16_tflops});
    doc.inventory.nodes.push_back(std::move(dn));
  }
  for (const auto& l : inv.links)
    doc.inventory.links.push_back({std::string(hw::to_string(l.kind)), l.node_a, l.node_b, l.gpus,
                                   l.bandwidth_bytes_per_s, l.latency_s});
}

void copy_models(const std::vector<plan_model>& models, plan_document& doc) {
  for (const auto& m : models) {
    doc_model dm;
    dm.name = m.name;
    dm.file = m.shape.file;
    dm.architecture = m.shape.architecture;
    dm.hf_repo = m.hf_repo;
    dm.n_params = m.shape.n_params;
    dm.file_bytes = m.shape.file_bytes;
    dm.n_layers = m.shape.n_layer;
    dm.n_experts = m.shape.n_expert;
    dm.known_architecture = m.shape.known_architecture;
    dm.quant = m.shape.quant;
    doc.models.push_back(dm);
    for (const auto& w : m.shape.warnings) doc.warnings.push_back(m.name + ": " + w);
  }
}

// Host figures that are defaults, not this node's own (never another machine's measurement).
void warn_host_defaults(const hw::inventory& inv, plan_document& doc) {
  for (const auto& n : inv.nodes) {
    const std::string cpu = n.cpu_model.empty() ? "its CPU" : fmt::format("CPU '{}'", n.cpu_model);
    if (n.ram_bandwidth_source == "catalogue")
      doc.warnings.push_back(
          fmt::format("node {}: RAM bandwidth {:.1f} GB/s is a default ({} is not in data/cpus.yaml and "
                      "ram_bandwidth_gbs is not declared): speeds with weights in RAM are rough",
                      n.name, n.ram_bandwidth_bytes_per_s / 1e9, cpu));
    if (n.cpu_peak_flops <= 0)
      doc.warnings.push_back(
          fmt::format("node {}: CPU compute is a default of 500 GFLOP/s ({} is not in data/cpus.yaml "
                      "and cpu.ghz is not declared): CPU prefill speeds are rough",
                      n.name, cpu));
  }
}

// Fills each role's defaults (context, agents, model: fast the smallest, code and think the largest)
// and merges the roles of each model into its demand. Fails for a role naming an unknown model.
result<std::map<std::string, demand>> merge_roles(std::vector<role_request>& roles,
                                                  const std::vector<plan_model>& models,
                                                  const std::vector<std::size_t>& by_size,
                                                  plan_document& doc) {
  std::map<std::string, demand> demands;
  const auto defaults = default_roles();
  for (auto& r : roles) {
    for (const auto& d : defaults)
      if (d.name == r.name) {
        if (r.ctx == 0) r.ctx = d.ctx;
        if (r.agents == 0) r.agents = d.agents;
      }
    if (r.ctx == 0) r.ctx = 8192;
    if (r.agents == 0) r.agents = 1;
    if (r.model.empty()) {
      std::size_t pick = r.name == "think"  ? by_size.back()
                         : r.name == "fast" ? by_size.front()
                                            : by_size[by_size.size() / 2];
      if (r.name == "code") pick = by_size.back();
      r.model = models[pick].name;
    }
    bool found = false;
    for (const auto& m : models) found = found || m.name == r.model;
    if (!found) {
      std::string names;
      for (const auto& m : models) names += (names.empty() ? "" : ", ") + m.name;
      return make_error(fmt::format("role '{}' names model '{}', which is not among the models ({})", r.name,
                                    r.model, names),
                        2);
    }
    auto& d = demands[r.model];
    d.roles.push_back(r.name);
    d.ctx = std::max(d.ctx, r.ctx);
    d.ctx_total += static_cast<long>(r.ctx) * r.agents;
    d.agents += r.agents;
    d.priority = std::max(d.priority, role_priority(r.name));
    doc.roles.push_back({r.name, r.model, r.ctx, r.agents});
  }
  return demands;
}

// Every strategy's placements of each model that has a demand, the model having the farm to itself.
std::map<std::string, std::vector<placement>> propose_all(const planner_ctx& pc,
                                                          const std::vector<plan_model>& models,
                                                          const std::map<std::string, demand>& demands) {
  std::map<std::string, std::vector<placement>> per_model;
  for (const auto& m : models) {
    auto it = demands.find(m.name);
    if (it == demands.end()) continue;
    auto& out = per_model[m.name];
    for (const auto& s : single_model_strategies()) {
      auto ps = s.propose(pc, m, it->second);
      for (auto& p : ps) out.push_back(std::move(p));
    }
  }
  return per_model;
}

// One model: its best-scoring feasible placement (none when nothing fits).
std::vector<chosen_placement> choose_single(const std::string& name, const demand& dm,
                                            const std::vector<placement>& ps) {
  const placement* best = nullptr;
  double best_score = 0;
  for (const auto& p : ps) {
    double s = to_candidate(name, dm, p).score;
    if (p.fits && (!best || s > best_score)) {
      best = &p;
      best_score = s;
    }
  }
  if (!best) return {};
  return {{name, *best}};
}

}  // namespace

std::vector<role_request> default_roles() {
  return {{"fast", "", 8192, 4}, {"code", "", 32768, 2}, {"think", "", 65536, 1}};
}

bool plan_fits(const plan_document& d) { return !d.chosen.backends.empty(); }

result<plan_document> make_plan(const hw::inventory& inv, const std::vector<plan_model>& models,
                                const std::vector<role_request>& roles_in, const plan_options& opt) {
  plan_document doc;
  if (models.empty()) return make_error("no model to plan (give --model FILE.gguf)", 2);
  const planner_ctx pc = make_planner_ctx(inv, opt);
  copy_inventory(inv, doc);
  std::vector<std::size_t> by_size(models.size());
  std::iota(by_size.begin(), by_size.end(), 0);
  std::sort(by_size.begin(), by_size.end(),
            [&](auto a, auto b) { return models[a].shape.file_bytes < models[b].shape.file_bytes; });
  copy_models(models, doc);
  warn_host_defaults(inv, doc);
  std::vector<role_request> roles = roles_in.empty() ? default_roles() : roles_in;
  auto merged = merge_roles(roles, models, by_size, doc);
  if (!merged) return merged.err();
  auto& demands = *merged;

  auto per_model = propose_all(pc, models, demands);
  for (const auto& m : models) {
    if (!per_model.count(m.name)) continue;
    for (const auto& p : per_model[m.name])
      doc.candidates.push_back(to_candidate(m.name, demands[m.name], p));
  }
  std::stable_sort(doc.candidates.begin(), doc.candidates.end(),
                   [](const doc_candidate& a, const doc_candidate& b) {
                     if (a.model != b.model) return a.model < b.model;
                     return a.score > b.score;
                   });

  // The deployment: one model -> its best candidate; several -> hybrid (hybrid.cpp).
  std::vector<chosen_placement> chosen;
  if (demands.size() == 1) {
    const auto& name = demands.begin()->first;
    chosen = choose_single(name, demands[name], per_model[name]);
  } else {
    std::vector<std::string> biggest_first;
    for (auto i = by_size.rbegin(); i != by_size.rend(); ++i)
      if (demands.count(models[*i].name)) biggest_first.push_back(models[*i].name);
    chosen = choose_hybrid(pc, models, biggest_first, demands, doc.warnings);
    if (!chosen.empty()) doc.candidates.insert(doc.candidates.begin(), hybrid_candidate(chosen));
  }
  if (chosen.empty()) {
    doc.recommendation.strategy = "";
    doc.recommendation.reasons.push_back("nothing fits: see why_not and fix of each candidate");
    return doc;
  }
  write_deployment(pc, models, chosen, demands, roles.size(), doc);
  return doc;
}

}  // namespace agifarm::plan
