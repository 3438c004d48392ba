// planner_internal: what the planner's parts share (not for other modules). make_plan (planner.cpp)
// merges roles into a demand per model, asks every strategy (strategies/*.cpp, behind propose_fn) for
// its placements of that model, turns them into candidates (candidate.cpp), picks the deployment
// (hybrid.cpp for several models) and writes it (deployment_writer.cpp). evaluate() is the one place a
// placement becomes memory and speed predictions; the strategies only say which GPUs and rules to try.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "hw/hw.hpp"
#include "plan/planner.hpp"
#include "plan/speed_model.hpp"
#include "plan/strategy.hpp"

namespace agifarm::plan::detail {

inline constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;

struct gpu_ref {
  int node = 0;
  int gpu = 0;
};

// The demand on one model: its roles merged (largest context, all agents).
struct demand {
  std::vector<std::string> roles;
  int ctx = 0;         // largest context a role asks per agent
  long ctx_total = 0;  // sum over roles of ctx * agents: the unified KV pool
  int agents = 0;
  int priority = 0;
};

// One evaluated placement of a model.
struct placement {
  plan::strategy strategy = plan::strategy::replica;
  std::string summary;
  int main_node = 0;
  std::vector<gpu_ref> local;   // GPUs of the main node, llama.cpp order after RPC devices
  std::vector<gpu_ref> remote;  // GPUs behind ggml-rpc-server on other nodes (listed first)
  std::vector<std::string> ot;  // -ot rules
  bool row_split = false;
  int replicas = 1;  // identical copies (replica strategy)
  int slots = 1;     // per copy
  long ctx = 0;      // total KV pool of one copy (-c, unified over the slots)
  bool fits = false;
  std::string why_not, fix;
  memory_estimate est;
  std::vector<std::string> dev_names;
  std::vector<std::uint64_t> caps;
  std::uint64_t host_cap = 0;
  speed_estimate speed;
  int max_ctx = 0;
  int expert_layers_on_gpu = 0;
};

// The request and the farm facts every strategy looks at, computed once per plan.
struct planner_ctx {
  const hw::inventory& inv;
  const plan_options& opt;
  std::vector<gpu_ref> all_gpus;   // every GPU of every node, inventory order
  std::uint64_t biggest_vram = 0;  // the largest GPU's VRAM
  int best_node = -1;              // the node with >= 2 GPUs and the most VRAM; -1 when none
};
planner_ctx make_planner_ctx(const hw::inventory& inv, const plan_options& opt);

std::string gib(std::uint64_t b);
const hw::gpu& gpu_of(const hw::inventory& inv, gpu_ref r);
gpu_ref biggest_gpu(const planner_ctx& pc);  // all_gpus must not be empty
std::vector<gpu_ref> gpus_of_node(const hw::inventory& inv, int node);

// llama-server's command line for p (the plan's backend arguments and the memory model's input).
std::vector<std::string> server_argv(const planner_ctx& pc, const model_shape& m, const placement& p);
// The devices llama.cpp sees for p: RPC servers first, then the main node's GPUs.
std::vector<device_desc> devices_of(const planner_ctx& pc, const placement& p);

// Estimates memory and speed of p at p.ctx and checks it against the devices (fits / why_not).
void evaluate(const planner_ctx& pc, const model_shape& m, placement& p);
// Largest context per agent (multiple of 256, up to the training context) at which p still fits.
int find_max_ctx(const planner_ctx& pc, const model_shape& m, placement p);
// What would make an infeasible p fit, "; "-separated.
std::string fix_for(const planner_ctx& pc, const model_shape& m, const placement& p);
// The KV pool of one copy serving `slots` of the demand's agents.
long copy_ctx(const demand& dm, int slots);
// p at the demand's context, with max_ctx and (when it does not fit) fix: what every strategy ends with.
placement finish_placement(const planner_ctx& pc, const model_shape& m, const demand& dm, placement p);

// The pattern part of the one -ot rule moving the experts of these layers to RAM (common/ot_rules).
std::string experts_of_layers(const std::set<int>& layers);
// Adds to `chosen` the layers whose experts leave device `device` (biggest expert layers first, lower
// index on ties) until `over_bytes` are freed. Returns whether any layer was added.
bool offload_more_layers(const model_shape& m, const memory_estimate& est, int device,
                         std::int64_t over_bytes, std::set<int>& chosen);
// Moves experts to RAM (p.ot) until p fits. Returns false when even all experts in RAM do not fit.
bool choose_expert_offload(const planner_ctx& pc, const model_shape& m, placement& p);

doc_candidate to_candidate(const std::string& model, const demand& dm, const placement& p);

// One strategy: the placements it proposes for a model that has the farm to itself, evaluated (see
// finish_placement). Empty: the strategy does not apply to this farm or model.
using propose_fn = std::vector<placement> (*)(const planner_ctx& pc, const plan_model& m, const demand& dm);
struct strategy_entry {
  plan::strategy kind;
  propose_fn propose;
};
// Every single-model strategy, in the order their candidates are listed before ranking.
std::span<const strategy_entry> single_model_strategies();

std::vector<placement> propose_replica(const planner_ctx& pc, const plan_model& m, const demand& dm);
std::vector<placement> propose_shard(const planner_ctx& pc, const plan_model& m, const demand& dm);
std::vector<placement> propose_shard_rpc(const planner_ctx& pc, const plan_model& m, const demand& dm);
std::vector<placement> propose_expert_offload(const planner_ctx& pc, const plan_model& m, const demand& dm);
std::vector<placement> propose_cpu(const planner_ctx& pc, const plan_model& m, const demand& dm);

// A model and the placement the deployment runs it with.
struct chosen_placement {
  std::string model;
  placement p;
};

// Several models on one farm: biggest first on the fewest free GPUs that hold it (then MoE experts in
// RAM, then system RAM), spare GPUs as extra replicas. Appends a warning per model left out.
std::vector<chosen_placement> choose_hybrid(const planner_ctx& pc, const std::vector<plan_model>& models,
                                            const std::vector<std::string>& biggest_first,
                                            std::map<std::string, demand>& demands,
                                            std::vector<std::string>& warnings);
// The hybrid candidate summing the chosen placements.
doc_candidate hybrid_candidate(const std::vector<chosen_placement>& chosen);

// Writes doc.chosen (backends, pools, strategy) and doc.recommendation from the chosen placements.
void write_deployment(const planner_ctx& pc, const std::vector<plan_model>& models,
                      const std::vector<chosen_placement>& chosen, std::map<std::string, demand>& demands,
                      std::size_t n_roles, plan_document& doc);

const plan_model& model_by_name(const std::vector<plan_model>& models, const std::string& name);

}  // namespace agifarm::plan::detail
