#include "emit/internal.hpp"
#include "common/format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "emit/ot_rules.hpp"

namespace agifarm::emit::detail {

const node_info* find_node(const emit_input& in, const std::string& name) {
  for (const auto& n : in.nodes)
    if (n.name == name) return &n;
  return nullptr;
}

const model_info* find_model(const emit_input& in, const std::string& name) {
  for (const auto& m : in.models)
    if (m.name == name) return &m;
  return nullptr;
}

const plan::backend_spec* find_backend(const checked_plan& p, const std::string& name) {
  for (const auto& b : p.backends)
    if (b.name == name) return &b;
  return nullptr;
}

std::vector<gpu_info> gpus_of(const emit_input& in, const plan::backend_spec& b) {
  std::vector<gpu_info> out;
  const node_info* n = find_node(in, b.node);
  if (!n) return out;
  for (int g : b.gpus)
    for (const auto& gi : n->gpus)
      if (gi.index == g) out.push_back(gi);
  return out;
}

std::string vendor_of(const emit_input& in, const plan::backend_spec& b) {
  auto g = gpus_of(in, b);
  if (!g.empty()) return g.front().vendor == "amd" ? "amd" : "nvidia";
  if (!b.gpus.empty()) return "nvidia";  // GPUs named but the inventory says nothing more
  return "cpu";
}

result<checked_plan> check(const emit_input& in, const emit_options& opt) {
  const auto& d = in.deployment;
  if (d.backends.empty()) return make_error("plan: the deployment has no backends; nothing to emit", 2);
  std::map<std::string, const plan::backend_spec*> by_name;
  for (const auto& b : d.backends) {
    if (b.name.empty()) return make_error("plan: a backend has no name", 2);
    if (!by_name.emplace(b.name, &b).second) return make_error(fmt::format("plan: backend '{}' is listed twice", b.name), 2);
    if (!in.nodes.empty() && !find_node(in, b.node))
      return make_error(fmt::format("plan: backend '{}' runs on node '{}', which the inventory does not list", b.name, b.node), 2);
    if (b.kind == plan::backend_kind::rpc_server && b.port == 0)
      return make_error(fmt::format("plan: ggml-rpc-server '{}' has no port; llama-server's --rpc must name it", b.name), 2);
    if (b.kind == plan::backend_kind::llama_server && b.model_file.empty())
      return make_error(fmt::format("plan: llama-server '{}' has no model_file", b.name), 2);
    for (const auto& g : b.gpus) {
      const node_info* n = find_node(in, b.node);
      if (n && !n->gpus.empty() &&
          std::none_of(n->gpus.begin(), n->gpus.end(), [&](const gpu_info& x) { return x.index == g; }))
        return make_error(fmt::format("plan: backend '{}' uses GPU {} of node '{}', which has no such GPU", b.name, g, b.node), 2);
    }
  }
  for (const auto& b : d.backends)
    for (const auto& dep : b.depends_on)
      if (!by_name.count(dep))
        return make_error(fmt::format("plan: backend '{}' depends on '{}', which is not in the deployment", b.name, dep), 2);
  // RPC servers: bound to one address (never all interfaces: ggml-rpc-server has no authentication),
  // reachable from the llama-server that uses them, and named by its --rpc.
  for (const auto& b : d.backends) {
    if (b.kind != plan::backend_kind::rpc_server) continue;
    if (b.host == "0.0.0.0" || b.host == "::" || b.host.empty())
      return make_error(fmt::format("plan: ggml-rpc-server '{}' binds to all interfaces ({}); give it node '{}''s private address "
                                    "(it has no authentication)", b.name, b.host, b.node), 2);
  }
  for (const auto& b : d.backends) {
    if (b.kind != plan::backend_kind::llama_server) continue;
    std::string rpc_list;
    for (std::size_t i = 0; i + 1 < b.args.size(); ++i)
      if (b.args[i] == "--rpc") rpc_list = "," + b.args[i + 1] + ",";
    for (const auto& dep : b.depends_on) {
      const auto* r = by_name[dep];
      if (r->kind != plan::backend_kind::rpc_server) continue;
      std::string endpoint = fmt::format("{}:{}", r->host, r->port);
      if (rpc_list.find("," + endpoint + ",") == std::string::npos)
        return make_error(fmt::format("plan: llama-server '{}' depends on ggml-rpc-server '{}' at {}, which its --rpc does not list",
                                      b.name, dep, endpoint), 2);
      if (r->node != b.node && (r->host == "127.0.0.1" || r->host == "::1" || r->host == "localhost"))
        return make_error(fmt::format("plan: ggml-rpc-server '{}' on node '{}' binds to {}, which llama-server '{}' on node '{}' "
                                      "cannot reach", dep, r->node, r->host, b.name, b.node), 2);
    }
  }
  for (const auto& p : d.pools)
    for (const auto& name : p.backends)
      if (!by_name.count(name))
        return make_error(fmt::format("plan: pool '{}' names backend '{}', which is not in the deployment", p.name, name), 2);

  checked_plan out;
  // Topological order (depth-first, dependencies first), stable with respect to the plan's order.
  std::map<std::string, int> state;  // 0 new, 1 visiting, 2 done
  std::string cycle;
  std::function<void(const plan::backend_spec&)> visit = [&](const plan::backend_spec& b) {
    if (state[b.name] == 2 || !cycle.empty()) return;
    if (state[b.name] == 1) { cycle = b.name; return; }
    state[b.name] = 1;
    for (const auto& dep : b.depends_on) visit(*by_name[dep]);
    state[b.name] = 2;
    out.backends.push_back(b);
  };
  for (const auto& b : d.backends) visit(b);
  if (!cycle.empty()) return make_error(fmt::format("plan: backends depend on each other in a cycle through '{}'", cycle), 2);

  // Resolve ports: per node (really per bind address, but a node is what a user sees).
  std::map<std::string, std::set<int>> used;
  for (const auto& b : out.backends)
    if (b.port) {
      if (!used[b.node].insert(b.port).second)
        return make_error(fmt::format("plan: port {} is used twice on node '{}' (backend '{}')", b.port, b.node, b.name), 2);
    }
  for (auto& b : out.backends) {
    if (b.port) continue;
    int p = opt.base_port;
    while (used[b.node].count(p)) ++p;
    used[b.node].insert(p);
    b.port = p;
  }
  for (const auto& b : out.backends)
    if (std::find(out.node_names.begin(), out.node_names.end(), b.node) == out.node_names.end())
      out.node_names.push_back(b.node);
  return out;
}

std::string gateway_node(const checked_plan& p) {
  std::map<std::string, int> servers;
  for (const auto& b : p.backends)
    if (b.kind == plan::backend_kind::llama_server) ++servers[b.node];
  std::string best = p.node_names.front();
  for (const auto& n : p.node_names)
    if (servers[n] > servers[best]) best = n;
  return best;
}

std::string gateway_yaml(const emit_input& in, const checked_plan& p, const emit_options& opt) {
  std::string gw = gateway_node(p);
  std::string s = "# agifarm gateway config (`agifarm serve --config FILE`), generated by `agifarm emit` from the plan's pools.\n";
  s += "# Without api_keys the gateway only listens on 127.0.0.1; add keys (see docs) before listening elsewhere.\n";
  s += fmt::format("listen: \"{}:{}\"\npools:\n", opt.gateway_host, opt.gateway_port);
  for (const auto& pool : in.deployment.pools) {
    s += fmt::format("  - name: \"{}\"\n", pool.name);
    if (!pool.aliases.empty()) {
      std::vector<std::string> q;
      for (const auto& a : pool.aliases) q.push_back("\"" + a + "\"");
      s += fmt::format("    aliases: [{}]\n", join(q, ", "));
    }
    s += fmt::format("    balance: {}\n", plan::to_string(pool.balance));
    int slots = 1;
    for (const auto& name : pool.backends)
      if (const auto* b = find_backend(p, name)) slots = std::max(slots, b->slots);
    s += fmt::format("    slots_per_replica: {}\n    priority: {}\n    replicas:\n", slots, pool.priority);
    for (const auto& name : pool.backends) {
      const auto* b = find_backend(p, name);
      if (!b) continue;
      std::string host = reach_host(b->host);
      if (b->node != gw && (host == "127.0.0.1" || host == "::1")) {
        const node_info* n = find_node(in, b->node);
        s += fmt::format("      # {} listens on {} of node {}: the gateway on node {} cannot reach it unless it binds to an "
                         "address of that node\n",
                         b->name, host, b->node, gw);
        if (n && !n->address.empty()) host = n->address;
      }
      s += fmt::format("      - name: \"{}\"\n        url: \"http://{}:{}\"\n", b->name, host, b->port);
    }
  }
  return s;
}

std::vector<std::string> argv_of(const plan::backend_spec& b, const std::string& binary_dir) {
  plan::backend_spec merged = b;
  merged.args = merge_override_args(b.args);
  return plan::backend_argv(merged, binary_dir, b.port);
}

std::string sh_quote(const std::string& s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("_./:=,+-@%").find(c) != std::string_view::npos;
      }))
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string sh_join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += sh_quote(w);
  }
  return out;
}

std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) out += static_cast<char>(std::tolower(u));
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "x" : out;
}

std::string reach_host(const std::string& bind_host) {
  if (bind_host == "0.0.0.0" || bind_host.empty()) return "127.0.0.1";
  if (bind_host == "::") return "::1";
  return bind_host;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

std::string gpu_list(const std::vector<int>& gpus) {
  std::vector<std::string> s;
  for (int g : gpus) s.push_back(std::to_string(g));
  return join(s, ",");
}

}  // namespace agifarm::emit::detail
