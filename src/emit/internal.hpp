// Helpers shared by the emit generators (not part of the public API). Pure functions, thread-safe.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/format.hpp"
#include "emit/emit.hpp"

namespace agifarm::emit::detail {

// A plan checked for what the generators rely on, with every port resolved (0 -> next free port from
// options.base_port on that node) and the backends in start order (dependencies first).
struct checked_plan {
  std::vector<plan::backend_spec> backends;  // start order
  std::vector<std::string> node_names;       // nodes that run something, in first-appearance order
  std::string gateway_node;                  // where the gateway runs (see gateway_node_of)
  // Filled by check_farm() only:
  std::set<std::string> keyed;  // backends that require the farm's backend key
  std::string key;              // the farm's backend key; empty when no backend requires one
};

result<checked_plan> check(const emit_input& in, const emit_options& opt);

// check() for the targets that run the plan's own backends across nodes (llama, compose, systemd):
// every llama-server on a node other than the gateway's binds that node's inventory address (when the plan
// left it on loopback or all interfaces) and requires the backend key, as does any backend whose plan env
// sets plan::k_api_key_env. The key: the one the plan carries (all such values must agree), else
// opt.backend_key, else new_backend_key().
result<checked_plan> check_farm(const emit_input& in, const emit_options& opt);

// The backend's environment as the files may print it: without plan::k_api_key_env (its value lives in
// farm.env only).
std::map<std::string, std::string> printable_env(const plan::backend_spec& b);

// farm.env: the key as AGIFARM_BACKEND_KEY (gateway) and LLAMA_API_KEY (llama-server). Needs p.key.
emitted_file farm_env_file(const checked_plan& p, const std::string& path);
// The nodes that need farm.env: those with a keyed backend, and the gateway's.
std::vector<std::string> key_nodes(const checked_plan& p);

// README section "## Start order": which node starts what, dependencies first, the gateway last.
// node_command(node) is how that node starts its part; gateway_command how the gateway starts (empty: with
// its node's command).
std::string start_order_md(const checked_plan& p,
                           const std::function<std::string(const std::string&)>& node_command,
                           const std::string& gateway_command);
// README section "## Security" for multi-node farms: private addresses, the key, ggml-rpc-server.
// key_install: how farm.env gets onto a node (a sentence).
std::string security_md(const emit_input& in, const checked_plan& p, const std::string& key_install);

// The backend's argv through the one argv builder (plan::backend_argv), its -ot rules merged.
std::vector<std::string> argv_of(const plan::backend_spec& b, const std::string& binary_dir);

const node_info* find_node(const emit_input& in, const std::string& name);
const model_info* find_model(const emit_input& in, const std::string& name);
const plan::backend_spec* find_backend(const checked_plan& p, const std::string& name);

// nvidia | amd | cpu: the vendor of the GPUs a backend uses (cpu when it uses none).
std::string vendor_of(const emit_input& in, const plan::backend_spec& b);
// The GPUs of a node a backend uses (inventory order); empty when unknown.
std::vector<gpu_info> gpus_of(const emit_input& in, const plan::backend_spec& b);

// The gateway's farm YAML (src/gateway/config.hpp: listen + pools with replica URLs, `key_env` for the
// replicas that require the backend key) for the plan's pools; p comes from check_farm().
std::string gateway_yaml(const emit_input& in, const checked_plan& p, const emit_options& opt);
// The node that runs the gateway: the node named "local" when a backend runs there; else the one with the
// most llama-server backends, the first in inventory order on a tie (start order when the inventory is
// empty).
std::string gateway_node_of(const emit_input& in, const checked_plan& p);

// Quotes a word for POSIX sh / bash (as is when it is safe, else single quotes).
std::string sh_quote(const std::string& s);
std::string sh_join(const std::vector<std::string>& words);
// The words, each through `quote`, separated by one space (sh_join; systemd's ExecStart=).
std::string join_quoted(const std::vector<std::string>& words, std::string (*quote)(const std::string&));
// Makes a name safe for file names, unit names and compose service names: [a-z0-9-].
std::string slug(const std::string& s);
// "12.5 GiB"
// The address used to reach a bound host from the same machine (0.0.0.0 -> 127.0.0.1).
std::string reach_host(const std::string& bind_host);
// Comma-joined.
std::string join(const std::vector<std::string>& v, const std::string& sep);
// The GPU indices as strings joined by ','.
std::string gpu_list(const std::vector<int>& gpus);

}  // namespace agifarm::emit::detail
