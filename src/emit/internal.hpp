// Helpers shared by the emit generators (not part of the public API). Pure functions, thread-safe.
#pragma once

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
};

result<checked_plan> check(const emit_input& in, const emit_options& opt);

// The backend's argv through the one argv builder (plan::backend_argv), its -ot rules merged.
std::vector<std::string> argv_of(const plan::backend_spec& b, const std::string& binary_dir);

const node_info* find_node(const emit_input& in, const std::string& name);
const model_info* find_model(const emit_input& in, const std::string& name);
const plan::backend_spec* find_backend(const checked_plan& p, const std::string& name);

// nvidia | amd | cpu: the vendor of the GPUs a backend uses (cpu when it uses none).
std::string vendor_of(const emit_input& in, const plan::backend_spec& b);
// The GPUs of a node a backend uses (inventory order); empty when unknown.
std::vector<gpu_info> gpus_of(const emit_input& in, const plan::backend_spec& b);

// The gateway's farm YAML (src/gateway/config.hpp: listen + pools with replica URLs) for the plan's pools.
std::string gateway_yaml(const emit_input& in, const checked_plan& p, const emit_options& opt);
// The node that runs the gateway: the one with the most llama-server backends (first on a tie).
std::string gateway_node(const checked_plan& p);

// Quotes a word for POSIX sh / bash (as is when it is safe, else single quotes).
std::string sh_quote(const std::string& s);
std::string sh_join(const std::vector<std::string>& words);
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
