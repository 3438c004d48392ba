// deployment: the contract between the planner (which writes it), and emit / the supervisor / the
// gateway (which carry it out). A deployment is the set of backend processes of one chosen plan and
// the pools the gateway routes to. It is plain data, serialised as the "deployment" object of the plan
// JSON (docs/plan-format.md); to_json/from_json round-trip exactly.
//
// One module builds argument lists: backend_argv() is the only place that turns a backend_spec into
// an argv; the supervisor and `emit llama` both call it and never add arguments of their own.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::plan {

enum class backend_kind { llama_server, rpc_server };

// The environment variable llama-server reads its --api-key from. A backend_spec whose env sets it
// requires that key (the gateway sends it); it is kept out of argv so it never shows in `ps` or logs.
inline constexpr std::string_view k_api_key_env = "LLAMA_API_KEY";

struct device_memory {
  std::string name;  // llama.cpp device name (CUDA0, RPC0[127.0.0.1:50052], ...) or "host"
  std::uint64_t model_bytes = 0;
  std::uint64_t context_bytes = 0;
  std::uint64_t compute_bytes = 0;
  std::uint64_t total_bytes = 0;
};

struct backend_prediction {
  std::vector<device_memory> devices;
  device_memory host{"host"};
  double decode_tps = 0;  // single stream
  double prefill_tps = 0;
  double aggregate_decode_tps = 0;  // all slots busy
};

struct backend_spec {
  std::string name;  // unique in the deployment, e.g. "qwen3-8b-r0", "rpc-node2-gpu0"
  backend_kind kind = backend_kind::llama_server;
  std::string node = "local";      // inventory node name
  std::string model;               // model name (llama-server only)
  std::string model_file;          // absolute path on that node (llama-server only)
  std::vector<int> gpus;           // inventory GPU indices on the node
  std::string host = "127.0.0.1";  // address to bind
  int port = 0;                    // 0: the runner allocates a free port
  std::vector<std::string>
      args;  // everything but the binary and --host/--port (-m, -c, -np, -ngl, -ot, --rpc, ...)
  std::map<std::string, std::string> env;  // e.g. CUDA_VISIBLE_DEVICES
  std::vector<std::string> depends_on;     // backends that must be ready first (rpc servers of a shard)
  int slots = 1;                           // parallel sequences (-np)
  int ctx = 0;                             // total context (-c)
  std::optional<backend_prediction> predicted;
};

enum class balance_policy { least_outstanding, prefix_affinity };

struct pool_spec {
  std::string name;                   // model name served, e.g. "qwen3-8b"
  std::vector<std::string> aliases;   // role names routed here, e.g. "fast", "code"
  std::vector<std::string> backends;  // backend_spec names (llama-server only)
  balance_policy balance = balance_policy::least_outstanding;
  int priority = 0;  // higher is served first when queues compete (fast > think)
};

struct deployment {
  std::string strategy;  // replica | shard | shard_rpc | expert_offload | hybrid
  std::vector<backend_spec> backends;
  std::vector<pool_spec> pools;
};

// argv for one backend: [binary, args..., host/port flags], -ot rules merged to their minimal equivalent
// (common/ot_rules.hpp merge_override_args). binary_dir is where llama-server and
// ggml-rpc-server live; port must be resolved (non-zero) by the caller.
std::vector<std::string> backend_argv(const backend_spec& b, const std::string& binary_dir, int port);

boost::json::object to_json(const deployment& d);
result<deployment> deployment_from_json(const boost::json::value& v);  // errors name the JSON path

std::string to_string(backend_kind k);
std::string to_string(balance_policy p);
// Queue priority of a role: interactive "fast" over "code" over everything else ("think", custom).
int role_priority(std::string_view role);

}  // namespace agifarm::plan
