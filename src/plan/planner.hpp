// planner: for each model and its roles, computes every strategy on an inventory — replica per GPU,
// shard over the GPUs of a node (layer split; row split where NVLink makes it pay), shard across
// nodes through llama.cpp RPC, MoE expert offload (choosing which layers' experts go to system RAM,
// biggest first, so the most expert layers stay on GPU), and a hybrid farm (sharded core + helper
// replicas) — predicts memory (memory_model) and speed (speed_model) for each, ranks them, and picks
// a deployment that serves every role. The result is the plan document (plan_document.hpp).
//
// Contract: make_plan is a pure function of its inputs (no I/O), thread-safe. It fails only for bad
// requests (a role naming an unknown model: exit 2). When nothing fits, the document has every
// candidate with why_not / fix and an empty deployment; callers exit 3 (see plan_fits()).
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"
#include "hw/hw.hpp"
#include "plan/memory_model.hpp"
#include "plan/plan_document.hpp"

namespace agifarm::plan {

struct role_request {
  std::string name;   // fast | code | think | ...
  std::string model;  // model name; "" = chosen by the planner (fast: smallest, think: largest)
  int ctx = 0;        // tokens per agent; 0 = role default
  int agents = 0;     // concurrent agents; 0 = role default
};

struct plan_model {
  std::string name;  // short name ("qwen3-8b"); default: file stem
  model_shape shape;
  std::string hf_repo;
};

struct plan_options {
  std::uint64_t device_margin_bytes = 1ull << 30;  // free memory left on every GPU (llama.cpp --fit target)
  std::uint64_t host_reserve_bytes = 4ull << 30;   // RAM left for the OS and the rest
  int rpc_base_port = 50052;
  std::string kv_type = "f16";  // -ctk / -ctv of the planned backends
};

// Default roles: fast (8k ctx, 4 agents), code (32k, 2), think (64k, 1).
std::vector<role_request> default_roles();

result<plan_document> make_plan(const hw::inventory& inv, const std::vector<plan_model>& models,
                                const std::vector<role_request>& roles, const plan_options& opt = {});

bool plan_fits(const plan_document& d);  // a deployment was chosen

// MoE expert offload on given devices: the -ot rule moving the experts of the fewest layers to system
// RAM (biggest expert layers first, per overflowing device) so every device keeps `margin_bytes` free.
struct offload_choice {
  bool fits = false;
  std::vector<int> host_layers;  // layers whose experts go to RAM, ascending
  std::string ot_rule;           // "" when nothing moves
  memory_estimate estimate;
};
result<offload_choice> choose_offload(const model_shape& m, const server_args& base,
                                      const std::vector<device_desc>& devices, std::uint64_t margin_bytes);

// Human-readable ranked table with memory bars, speeds, pros / cons and the recommendation.
std::string format_plan(const plan_document& d);

}  // namespace agifarm::plan
