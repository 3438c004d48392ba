// emit: turns a plan into the files that run it with the user's own tools — llama.cpp shell scripts,
// docker-compose, systemd units, vLLM command lines, DeepSpeed ZeRO-3 + Accelerate configs.
//
// Every generator is a pure function from (emit_input, emit_options) to a list of files (path relative
// to the output directory, content, mode); nothing touches the disk until write_files(), which refuses to
// overwrite anything unless told to. Generators never build a backend's argv themselves: they call
// plan::backend_argv(), which also rewrites -ot rules to their minimal equivalent (merge_override_args()).
// All functions are thread-safe (no shared state). Errors name the backend / node / model concerned.
//
// Multi-node farms (llama, compose, systemd): the gateway runs on gateway_node(); every llama-server on
// another node binds its node's private address and requires the farm's backend key, which only the file
// farm.env holds (mode 0600; docs/emit.md). The key is an input (emit_options::backend_key), so the
// generators stay pure; new_backend_key() draws one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "plan/deployment.hpp"
#include "plan/plan_document.hpp"

namespace agifarm::emit {

struct gpu_info {
  int index = 0;                  // inventory index on the node (what backend_spec::gpus names)
  std::string vendor = "nvidia";  // nvidia | amd
  std::string name;               // "RTX 3090", "H100 SXM", ...
  std::uint64_t memory_bytes = 0;
  std::string compute_capability;  // "8.6" for NVIDIA when known; empty otherwise
};

struct node_info {
  std::string name;     // inventory node name (what backend_spec::node names)
  std::string address;  // private address other nodes reach it on ("127.0.0.1" for a lone box)
  std::vector<gpu_info> gpus;
  int cpu_cores = 0;
  std::uint64_t ram_bytes = 0;
};

struct model_info {
  std::string name;          // model name the pools serve
  std::string file;          // GGUF path
  std::string hf_repo;       // Hugging Face id ("Qwen/Qwen3-8B") named by the GGUF metadata, may be empty
  std::string architecture;  // qwen3, qwen3moe, ...
  std::uint64_t n_params = 0;
  int n_layers = 0;
  int n_heads = 0;    // attention heads (vLLM's tensor parallel size must divide it); 0: unknown
  int n_experts = 0;  // 0 for dense models
  int n_experts_used = 0;
};

// Everything emit reads from a plan.
struct emit_input {
  std::vector<node_info> nodes;
  std::vector<model_info> models;
  plan::deployment deployment;
  std::string plan_json;  // the plan document as given (copied next to files that need it)
};

// The view of a plan document (docs/plan-format.md) emit works from; plan_json is the text it came from.
emit_input input_from_plan(const plan::plan_document& doc, std::string plan_json);
// Parses a plan document's text (errors name the JSON path, exit code 2).
result<emit_input> input_from_plan_text(std::string_view text);

struct emit_options {
  std::string llama_bin_dir = "/opt/llama.cpp/bin";  // where llama-server / ggml-rpc-server live on the nodes
  std::string agifarm_bin = "/usr/local/bin/agifarm";
  std::string state_dir;  // llama scripts: pid files and logs (default: $XDG_STATE_HOME/agifarm/<node>)
  std::string image;      // compose: llama-server image (default by GPU vendor)
  std::string rpc_image;  // compose: image with ggml-rpc-server and GGML_RPC (no published one)
  std::string gateway_image = "agifarm:latest";
  std::string gateway_host = "127.0.0.1";
  int gateway_port = 8080;
  int base_port = 8081;                   // ports for llama-server backends the plan left at 0
  std::string user = "agifarm";           // systemd: the account services run as
  std::string nvme_path = "/local_nvme";  // deepspeed: NVMe offload directory
  int vllm_base_port = 8000;
  // The farm's backend key, written to farm.env when a backend requires one (letters, digits and ._+/=:-).
  // Empty: a fresh new_backend_key() per call, so callers emitting several targets of one farm set it once.
  // A key the plan carries (plan::k_api_key_env in a backend's env) takes precedence.
  std::string backend_key;
};

// The variable farm.env gives the gateway the key in (gateway.yaml: `key_env: AGIFARM_BACKEND_KEY`);
// farm.env also sets plan::k_api_key_env (LLAMA_API_KEY), which llama-server reads its --api-key from.
inline constexpr const char* k_backend_key_var = "AGIFARM_BACKEND_KEY";
inline constexpr const char* k_farm_env_file = "farm.env";

// 64 hex characters (256 bits) from std::random_device (the kernel's random source).
std::string new_backend_key();

struct emitted_file {
  std::string path;  // relative to the output directory
  std::string content;
  bool executable = false;
  bool secret = false;  // holds the backend key: written with mode 0600, never wider
};

using files = std::vector<emitted_file>;

result<files> emit_llama(const emit_input& in, const emit_options& opt);
result<files> emit_compose(const emit_input& in, const emit_options& opt);
result<files> emit_systemd(const emit_input& in, const emit_options& opt);
result<files> emit_vllm(const emit_input& in, const emit_options& opt);
result<files> emit_deepspeed(const emit_input& in, const emit_options& opt);

// By target name: llama | compose | systemd | vllm | deepspeed.
result<files> emit_target(const std::string& target, const emit_input& in, const emit_options& opt);
const std::vector<std::string>& target_names();

// Writes files under dir (created if missing). Without force, fails before writing anything when any of
// the files already exists, naming it. Secret files are created with mode 0600 before anything is written
// to them (an existing one is chmod'ed to 0600 first) and are never followed through a symlink.
status write_files(const std::string& dir, const files& out, bool force);

}  // namespace agifarm::emit
