// plan_document: the top-level plan JSON that `agifarm plan --json` prints and that `agifarm emit`
// and `agifarm up` read (format described in docs/plan-format.md). It carries the hardware the plan
// was made for, the models, the roles, every candidate strategy with its predictions, the
// recommendation, and the chosen deployment (plan/deployment.hpp, the contract the runners execute).
//
// Contract: plain data; to_json / plan_document_from_json round-trip exactly. from_json never
// throws and never aborts on bad input: it returns an error (exit code 2) naming the JSON path of the
// first problem ("plan JSON at candidates[2].devices[0].model_bytes: expected an integer").
// Thread-safe (no shared state).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "plan/deployment.hpp"

namespace agifarm::plan {

inline constexpr int k_plan_format_version = 1;

// The hardware, as much of it as emit / up need (a copy of hw::inventory's essentials, so the plan
// file is self-contained and readable without the inventory YAML).
struct doc_gpu {
  int index = 0;
  std::string name;
  std::string vendor;  // "nvidia" | "amd" | "none"
  std::uint64_t vram_bytes = 0;
  double bandwidth_bytes_per_s = 0;
  double fp16_tflops = 0;
};
struct doc_node {
  std::string name;
  std::string address;
  std::vector<doc_gpu> gpus;
  int cpu_cores = 0;
  std::uint64_t ram_bytes = 0;
  double ram_bandwidth_bytes_per_s = 0;
};
struct doc_link {
  std::string kind;  // "pcie" | "nvlink" | "ethernet"
  std::string node_a, node_b;
  std::vector<int> gpus;
  double bandwidth_bytes_per_s = 0;
  double latency_s = 0;
};
struct doc_inventory {
  std::vector<doc_node> nodes;
  std::vector<doc_link> links;
};

struct doc_model {
  std::string name;          // short name used by roles and pools ("qwen3-30b-a3b")
  std::string file;          // path of the (first) GGUF file
  std::string architecture;  // general.architecture
  std::string hf_repo;       // general.source.repo_url or general.base_model.0.repo_url, else ""
  std::uint64_t n_params = 0;
  std::uint64_t file_bytes = 0;
  std::uint64_t n_layers = 0;
  std::uint64_t n_experts = 0;     // 0 for dense
  std::string quant;               // dominant weight type ("Q4_K")
  bool known_architecture = true;  // false: generic estimate, see warnings
};

struct doc_role {
  std::string name;   // "fast" | "code" | "think" | user-defined
  std::string model;  // doc_model::name
  int ctx = 0;        // context per agent (tokens)
  int agents = 1;     // concurrent agents (parallel slots)
};

struct doc_candidate {
  std::string model;     // doc_model::name
  std::string role;      // doc_role::name ("" when the candidate serves the model for all its roles)
  std::string strategy;  // replica | shard | shard_rpc | expert_offload | hybrid
  std::string summary;   // one line: "4 replicas, one per RTX 3090 on node a"
  bool feasible = false;
  std::string why_not;                               // when infeasible: exactly what does not fit, where
  std::string fix;                                   // when infeasible: what would make it fit
  std::vector<device_memory> devices;                // per device used (llama.cpp names or "node/gpuN")
  std::vector<std::uint64_t> device_capacity_bytes;  // same order as devices (0 for host)
  double decode_tps = 0;                             // single stream
  double prefill_tps = 0;
  double aggregate_decode_tps = 0;  // all agents busy
  int max_ctx = 0;                  // largest per-agent context that still fits
  int agents = 0;                   // concurrent agents served
  std::vector<std::string> pros, cons;
  double score = 0;  // ranking key (higher is better)
};

struct doc_recommendation {
  std::string strategy;
  int candidate = -1;  // index into candidates
  std::vector<std::string> reasons;
  // The best feasible candidate of another strategy for the same model, and how much faster (decode
  // and aggregate tokens/s together) it would have to be predicted to outrank the recommendation:
  // 0.34 = +34 %; 0 or less: it ranks as high. "" / -1 when there is no rival (one strategy fits, or
  // a hybrid of several models).
  std::string runner_up{};
  int runner_up_candidate = -1;
  double runner_up_gain = 0;
};

struct plan_document {
  int version = k_plan_format_version;
  doc_inventory inventory;
  std::vector<doc_model> models;
  std::vector<doc_role> roles;
  std::vector<doc_candidate> candidates;
  doc_recommendation recommendation;
  deployment chosen;  // serialised as "deployment"
  std::vector<std::string> warnings;
  std::vector<std::string> notes;  // where figures came from (e.g. compute buffers measured by llama.cpp)
};

boost::json::object to_json(const plan_document& d);
result<plan_document> plan_document_from_json(const boost::json::value& v);
// Parses text (any bytes); errors name the JSON path or the parse position.
result<plan_document> parse_plan_document(std::string_view text);

}  // namespace agifarm::plan
