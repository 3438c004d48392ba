#include "emit/internal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "common/format.hpp"
#include "common/ot_rules.hpp"

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
    if (!by_name.emplace(b.name, &b).second)
      return make_error(fmt::format("plan: backend '{}' is listed twice", b.name), 2);
    if (!in.nodes.empty() && !find_node(in, b.node))
      return make_error(fmt::format("plan: backend '{}' runs on node '{}', which the inventory does not list",
                                    b.name, b.node),
                        2);
    if (b.kind == plan::backend_kind::rpc_server && b.port == 0)
      return make_error(
          fmt::format("plan: ggml-rpc-server '{}' has no port; llama-server's --rpc must name it", b.name),
          2);
    if (b.kind == plan::backend_kind::llama_server && b.model_file.empty())
      return make_error(fmt::format("plan: llama-server '{}' has no model_file", b.name), 2);
    for (const auto& g : b.gpus) {
      const node_info* n = find_node(in, b.node);
      if (n && !n->gpus.empty() &&
          std::none_of(n->gpus.begin(), n->gpus.end(), [&](const gpu_info& x) { return x.index == g; }))
        return make_error(fmt::format("plan: backend '{}' uses GPU {} of node '{}', which has no such GPU",
                                      b.name, g, b.node),
                          2);
    }
  }
  for (const auto& b : d.backends)
    for (const auto& dep : b.depends_on)
      if (!by_name.count(dep))
        return make_error(
            fmt::format("plan: backend '{}' depends on '{}', which is not in the deployment", b.name, dep),
            2);
  // RPC servers: bound to one address (never all interfaces: ggml-rpc-server has no authentication),
  // reachable from the llama-server that uses them, and named by its --rpc.
  for (const auto& b : d.backends) {
    if (b.kind != plan::backend_kind::rpc_server) continue;
    if (b.host == "0.0.0.0" || b.host == "::" || b.host.empty())
      return make_error(
          fmt::format(
              "plan: ggml-rpc-server '{}' binds to all interfaces ({}); give it node '{}''s private address "
              "(it has no authentication)",
              b.name, b.host, b.node),
          2);
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
        return make_error(fmt::format("plan: llama-server '{}' depends on ggml-rpc-server '{}' at {}, which "
                                      "its --rpc does not list",
                                      b.name, dep, endpoint),
                          2);
      if (r->node != b.node && (r->host == "127.0.0.1" || r->host == "::1" || r->host == "localhost"))
        return make_error(
            fmt::format(
                "plan: ggml-rpc-server '{}' on node '{}' binds to {}, which llama-server '{}' on node '{}' "
                "cannot reach",
                dep, r->node, r->host, b.name, b.node),
            2);
    }
  }
  for (const auto& p : d.pools)
    for (const auto& name : p.backends)
      if (!by_name.count(name))
        return make_error(
            fmt::format("plan: pool '{}' names backend '{}', which is not in the deployment", p.name, name),
            2);

  checked_plan out;
  // Topological order (depth-first, dependencies first), stable with respect to the plan's order.
  std::map<std::string, int> state;  // 0 new, 1 visiting, 2 done
  std::string cycle;
  std::function<void(const plan::backend_spec&)> visit = [&](const plan::backend_spec& b) {
    if (state[b.name] == 2 || !cycle.empty()) return;
    if (state[b.name] == 1) {
      cycle = b.name;
      return;
    }
    state[b.name] = 1;
    for (const auto& dep : b.depends_on) visit(*by_name[dep]);
    state[b.name] = 2;
    out.backends.push_back(b);
  };
  for (const auto& b : d.backends) visit(b);
  if (!cycle.empty())
    return make_error(fmt::format("plan: backends depend on each other in a cycle through '{}'", cycle), 2);

  // Resolve ports: per node (really per bind address, but a node is what a user sees).
  std::map<std::string, std::set<int>> used;
  for (const auto& b : out.backends)
    if (b.port) {
      if (!used[b.node].insert(b.port).second)
        return make_error(
            fmt::format("plan: port {} is used twice on node '{}' (backend '{}')", b.port, b.node, b.name),
            2);
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
  out.gateway_node = gateway_node_of(in, out);
  return out;
}

std::string gateway_node_of(const emit_input& in, const checked_plan& p) {
  if (std::find(p.node_names.begin(), p.node_names.end(), "local") != p.node_names.end()) return "local";
  std::map<std::string, int> servers;
  for (const auto& b : p.backends)
    if (b.kind == plan::backend_kind::llama_server) ++servers[b.node];
  std::vector<std::string> order;  // inventory order, then any node the inventory does not list
  for (const auto& n : in.nodes)
    if (std::find(p.node_names.begin(), p.node_names.end(), n.name) != p.node_names.end())
      order.push_back(n.name);
  for (const auto& n : p.node_names)
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  std::string best = order.front();
  for (const auto& n : order)
    if (servers[n] > servers[best]) best = n;
  return best;
}

namespace {

bool any_address(const std::string& h) { return h.empty() || h == "0.0.0.0" || h == "::"; }
bool loopback(const std::string& h) {
  return h == "127.0.0.1" || h == "::1" || h == "localhost" || h.rfind("127.", 0) == 0;
}

// What farm.env can hold unquoted for bash `.`, systemd's EnvironmentFile= and compose's env_file alike.
bool key_chars_ok(const std::string& k) {
  return !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("._+/=:-").find(c) != std::string_view::npos;
  });
}

}  // namespace

result<checked_plan> check_farm(const emit_input& in, const emit_options& opt) {
  auto p = check(in, opt);
  if (!p) return p;
  const std::string key_var(plan::k_api_key_env);
  std::string planned_key, planned_by;
  for (auto& b : p->backends) {
    auto it = b.env.find(key_var);
    if (it != b.env.end()) {
      if (b.kind == plan::backend_kind::llama_server) p->keyed.insert(b.name);
      if (!it->second.empty()) {
        // Never name the value in a message: it is a secret.
        if (!key_chars_ok(it->second))
          return make_error(
              fmt::format("plan: backend '{}' carries a {} with characters farm.env cannot hold "
                          "(use letters, digits and ._+/=:- only)",
                          b.name, key_var),
              2);
        if (!planned_key.empty() && planned_key != it->second)
          return make_error(
              fmt::format(
                  "plan: backends '{}' and '{}' carry different {} values; emit writes one backend key "
                  "per farm (farm.env)",
                  planned_by, b.name, key_var),
              2);
        planned_key = it->second;
        planned_by = b.name;
      }
    }
    if (b.kind != plan::backend_kind::llama_server || b.node == p->gateway_node) continue;
    p->keyed.insert(b.name);
    if (!any_address(b.host) && !loopback(b.host)) continue;  // the plan named an address of that node
    const node_info* n = find_node(in, b.node);
    if (!n || any_address(n->address) || loopback(n->address))
      return make_error(
          fmt::format(
              "plan: llama-server '{}' runs on node '{}', not on the gateway's node '{}', and the inventory "
              "gives node '{}' no private address to bind it to",
              b.name, b.node, p->gateway_node, b.node),
          2);
    b.host = n->address;
  }
  if (p->keyed.empty()) return p;
  p->key = !planned_key.empty()       ? planned_key
           : !opt.backend_key.empty() ? opt.backend_key
                                      : new_backend_key();
  if (!key_chars_ok(p->key))
    return make_error(
        "emit: the backend key has characters farm.env cannot hold (use letters, digits and ._+/=:- only)",
        2);
  return p;
}

std::map<std::string, std::string> printable_env(const plan::backend_spec& b) {
  std::map<std::string, std::string> env(b.env.begin(), b.env.end());
  env.erase(std::string(plan::k_api_key_env));
  return env;
}

std::vector<std::string> key_nodes(const checked_plan& p) {
  std::vector<std::string> out;
  for (const auto& n : p.node_names) {
    bool need = n == p.gateway_node;
    for (const auto& b : p.backends) need |= b.node == n && p.keyed.count(b.name);
    if (need) out.push_back(n);
  }
  return out;
}

emitted_file farm_env_file(const checked_plan& p, const std::string& path) {
  std::vector<std::string> keyed;
  for (const auto& b : p.backends)
    if (p.keyed.count(b.name)) keyed.push_back(b.name);
  std::string s =
      "# agifarm: this farm's backend key. Generated by `agifarm emit`. Keep it secret: mode 0600, never in "
      "a command line.\n";
  s += fmt::format("# Copy it (mode 0600) to node(s) {}. These llama-servers require it: {}.\n",
                   join(key_nodes(p), ", "), join(keyed, ", "));
  s += fmt::format(
      "# {}: what the gateway sends them (gateway.yaml: key_env). {}: what llama-server reads its --api-key "
      "from.\n",
      k_backend_key_var, plan::k_api_key_env);
  s += "# Both lines hold the same key; change them together.\n";
  s += fmt::format("{}={}\n{}={}\n", k_backend_key_var, p.key, plan::k_api_key_env, p.key);
  emitted_file f{path, s, false};
  f.secret = true;
  return f;
}

std::string start_order_md(const checked_plan& p,
                           const std::function<std::string(const std::string&)>& node_command,
                           const std::string& gateway_command) {
  // Step of a backend: 1 + the latest step of what it depends on.
  std::map<std::string, int> step;
  int last = 0;
  for (const auto& b : p.backends) {
    int s = 1;
    for (const auto& d : b.depends_on) s = std::max(s, step[d] + 1);
    step[b.name] = s;
    last = std::max(last, s);
  }
  std::string out =
      "\n## Start order\n\nStart the nodes in this order; each waits for what it needs on the nodes before "
      "it.\n\n";
  std::set<std::string> started;
  auto node_label = [&](const std::string& node) {
    std::string cmd = started.insert(node).second ? node_command(node) : "";
    return cmd.empty() ? fmt::format("node `{}`", node) : fmt::format("node `{}` ({})", node, cmd);
  };
  for (int s = 1; s <= last; ++s) {
    std::vector<std::string> parts;
    for (const auto& node : p.node_names) {
      std::vector<std::string> names;
      std::set<std::string> kinds;
      for (const auto& b : p.backends)
        if (b.node == node && step[b.name] == s) {
          names.push_back("`" + b.name + "`");
          kinds.insert(plan::to_string(b.kind));
        }
      if (names.empty()) continue;
      std::vector<std::string> k(kinds.begin(), kinds.end());
      parts.push_back(fmt::format("{}: {} ({})", node_label(node), join(names, ", "), join(k, ", ")));
    }
    out += fmt::format("{}. {}\n", s, join(parts, "; "));
  }
  std::string gw = gateway_command.empty() ? "started with its node's backends, after them" : gateway_command;
  out += fmt::format("{}. node `{}`: the gateway ({}), in front of the pools' replicas\n", last + 1,
                     p.gateway_node, gw);
  return out;
}

std::string security_md(const emit_input& in, const checked_plan& p, const std::string& key_install) {
  std::string out = "\n## Security\n\n";
  std::vector<std::string> remote;
  for (const auto& b : p.backends)
    if (b.node != p.gateway_node) remote.push_back(fmt::format("`{}` on {}:{}", b.name, b.host, b.port));
  if (!remote.empty())
    out += fmt::format(
        "- The backends on nodes other than the gateway's (`{}`) listen only on their node's private address "
        "from "
        "the plan's inventory, never on all interfaces: {}. Firewall those ports to the farm's nodes.\n",
        p.gateway_node, join(remote, ", "));
  if (!p.key.empty()) {
    std::vector<std::string> keyed;
    for (const auto& b : p.backends)
      if (p.keyed.count(b.name)) keyed.push_back("`" + b.name + "`");
    out += fmt::format(
        "- These llama-servers require the farm's backend key: {}. The gateway sends it (`key_env: {}` in "
        "gateway.yaml). `farm.env` (mode 0600) holds it, as `{}` for the gateway and `{}` for llama-server, "
        "which reads its `--api-key` from that variable: the key is never on a command line. Copy `farm.env` "
        "to "
        "node(s) {} and keep it secret (mode 0600, not in version control). {}\n",
        join(keyed, ", "), k_backend_key_var, k_backend_key_var, plan::k_api_key_env,
        join(key_nodes(p), ", "), key_install);
  }
  bool rpc = false;
  for (const auto& b : p.backends) rpc |= b.kind == plan::backend_kind::rpc_server;
  if (rpc)
    out +=
        "- `ggml-rpc-server` has no authentication and no encryption: whoever reaches its port can use that "
        "machine's "
        "devices and read their memory. It is bound to its node's private address; never expose it to an "
        "untrusted "
        "network, and firewall its port so only the node running llama-server can connect.\n";
  (void)in;
  return out;
}

std::string gateway_yaml(const emit_input& in, const checked_plan& p, const emit_options& opt) {
  std::string s =
      "# agifarm gateway config (`agifarm serve --config FILE`), generated by `agifarm emit` from the plan's "
      "pools.\n";
  s += "# Without api_keys the gateway only listens on 127.0.0.1; add keys (see docs) before listening "
       "elsewhere.\n";
  if (!p.key.empty())
    s += fmt::format(
        "# Replicas with key_env get the farm's backend key from ${} (set by farm.env): start the gateway "
        "with\n"
        "# farm.env loaded.\n",
        k_backend_key_var);
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
      // check_farm() bound every llama-server off the gateway's node to its node's address.
      std::string host = reach_host(b->host);
      s += fmt::format("      - name: \"{}\"\n        url: \"http://{}:{}\"\n", b->name, host, b->port);
      if (p.keyed.count(b->name)) s += fmt::format("        key_env: {}\n", k_backend_key_var);
    }
  }
  return s;
}

std::vector<std::string> argv_of(const plan::backend_spec& b, const std::string& binary_dir) {
  return plan::backend_argv(b, binary_dir, b.port);
}

std::string sh_quote(const std::string& s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               std::string_view("_./:=,+-@%").find(c) != std::string_view::npos;
      }))
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string join_quoted(const std::vector<std::string>& words, std::string (*quote)(const std::string&)) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += quote(w);
  }
  return out;
}

std::string sh_join(const std::vector<std::string>& words) { return join_quoted(words, sh_quote); }

std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u))
      out += static_cast<char>(std::tolower(u));
    else if (!out.empty() && out.back() != '-')
      out += '-';
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
