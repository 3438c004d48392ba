#include "plan/deployment.hpp"

#include <fmt/format.h>

#include "common/ot_rules.hpp"
#include "plan/json_reader.hpp"

namespace agifarm::plan {
namespace json = boost::json;

std::string to_string(backend_kind k) {
  return k == backend_kind::llama_server ? "llama-server" : "ggml-rpc-server";
}
int role_priority(std::string_view role) { return role == "fast" ? 2 : role == "code" ? 1 : 0; }

std::string to_string(balance_policy p) {
  return p == balance_policy::least_outstanding ? "least_outstanding" : "prefix_affinity";
}

std::vector<std::string> backend_argv(const backend_spec& b, const std::string& binary_dir, int port) {
  std::string dir = binary_dir.empty() || binary_dir.back() == '/' ? binary_dir : binary_dir + "/";
  std::vector<std::string> argv{dir + to_string(b.kind)};
  // -ot rules in their minimal equivalent form (one merged rule per buffer type; rules that are not
  // whole-layer expert rules stay as written): the same text for `up`, every emitter and the plan
  const auto args = merge_override_args(b.args);
  argv.insert(argv.end(), args.begin(), args.end());
  if (b.kind == backend_kind::llama_server) {
    argv.insert(argv.end(), {"--host", b.host, "--port", std::to_string(port)});
  } else {
    argv.insert(argv.end(), {"-H", b.host, "-p", std::to_string(port)});
  }
  return argv;
}

namespace {

json::array strings_to_json(const std::vector<std::string>& v) { return json::array(v.begin(), v.end()); }

using detail::reader;

}  // namespace

json::object to_json(const deployment& d) {
  json::array backends;
  for (const auto& b : d.backends) {
    json::object env;
    for (const auto& [k, v] : b.env) env[k] = v;
    json::object o{{"name", b.name},
                   {"kind", to_string(b.kind)},
                   {"node", b.node},
                   {"model", b.model},
                   {"model_file", b.model_file},
                   {"gpus", json::array(b.gpus.begin(), b.gpus.end())},
                   {"host", b.host},
                   {"port", b.port},
                   {"args", strings_to_json(b.args)},
                   {"env", env},
                   {"depends_on", strings_to_json(b.depends_on)},
                   {"slots", b.slots},
                   {"ctx", b.ctx}};
    if (b.predicted) {
      json::array devs;
      for (const auto& m : b.predicted->devices) devs.push_back(detail::to_json(m));
      o["predicted"] = json::object{{"devices", devs},
                                    {"host", detail::to_json(b.predicted->host)},
                                    {"decode_tps", b.predicted->decode_tps},
                                    {"prefill_tps", b.predicted->prefill_tps},
                                    {"aggregate_decode_tps", b.predicted->aggregate_decode_tps}};
    }
    backends.push_back(std::move(o));
  }
  json::array pools;
  for (const auto& p : d.pools) {
    pools.push_back(json::object{{"name", p.name},
                                 {"aliases", strings_to_json(p.aliases)},
                                 {"backends", strings_to_json(p.backends)},
                                 {"balance", to_string(p.balance)},
                                 {"priority", p.priority}});
  }
  return {{"strategy", d.strategy}, {"backends", backends}, {"pools", pools}};
}

namespace {

backend_spec backend_from_json(reader& r, const json::object& o, const std::string& path) {
  backend_spec b;
  b.name = r.str(o, "name", path, true);
  std::string kind = r.str(o, "kind", path);
  if (kind == "ggml-rpc-server")
    b.kind = backend_kind::rpc_server;
  else if (kind.empty() || kind == "llama-server")
    b.kind = backend_kind::llama_server;
  else
    r.fail(path + ".kind", "unknown kind '" + kind + "' (llama-server or ggml-rpc-server)");
  b.node = r.str(o, "node", path);
  if (b.node.empty()) b.node = "local";
  b.model = r.str(o, "model", path);
  b.model_file = r.str(o, "model_file", path);
  if (auto* g = o.if_contains("gpus"); g && g->is_array())
    for (auto& x : g->as_array())
      if (x.is_int64()) b.gpus.push_back(static_cast<int>(x.as_int64()));
  b.host = r.str(o, "host", path);
  if (b.host.empty()) b.host = "127.0.0.1";
  b.port = r.i32(o, "port", path, 0);
  if (b.port < 0 || b.port > 65535) r.fail(path + ".port", "out of range 0..65535");
  b.args = r.strs(o, "args", path);
  if (auto* e = o.if_contains("env"); e && e->is_object())
    for (auto& [k, val] : e->as_object())
      if (val.is_string()) b.env[std::string(k)] = std::string(val.as_string());
  b.depends_on = r.strs(o, "depends_on", path);
  b.slots = r.i32(o, "slots", path, 1);
  b.ctx = r.i32(o, "ctx", path, 0);
  if (auto* p = o.if_contains("predicted"); p && p->is_object()) {
    backend_prediction pr;
    const auto& po = p->as_object();
    if (auto* devs = po.if_contains("devices"); devs && devs->is_array())
      for (std::size_t j = 0; j < devs->as_array().size(); ++j)
        pr.devices.push_back(r.memory(devs->as_array()[j], fmt::format("{}.predicted.devices[{}]", path, j)));
    if (auto* h = po.if_contains("host")) pr.host = r.memory(*h, path + ".predicted.host");
    pr.decode_tps = r.num(po, "decode_tps", path + ".predicted");
    pr.prefill_tps = r.num(po, "prefill_tps", path + ".predicted");
    pr.aggregate_decode_tps = r.num(po, "aggregate_decode_tps", path + ".predicted");
    b.predicted = pr;
  }
  return b;
}

pool_spec pool_from_json(reader& r, const json::object& o, const std::string& path) {
  pool_spec p;
  p.name = r.str(o, "name", path, true);
  p.aliases = r.strs(o, "aliases", path);
  p.backends = r.strs(o, "backends", path);
  std::string bal = r.str(o, "balance", path);
  if (bal == "prefix_affinity")
    p.balance = balance_policy::prefix_affinity;
  else if (!bal.empty() && bal != "least_outstanding")
    r.fail(path + ".balance", "unknown policy '" + bal + "' (least_outstanding or prefix_affinity)");
  p.priority = r.i32(o, "priority", path, 0);
  return p;
}

}  // namespace

result<deployment> deployment_from_json(const json::value& v) {
  reader r;
  deployment d;
  const json::object* root = r.object(v, "deployment");
  if (!root) return make_error(r.err, 2);
  d.strategy = r.str(*root, "strategy", "deployment");
  r.each(*root, "backends", "deployment", false, [&](const json::object& o, const std::string& path) {
    d.backends.push_back(backend_from_json(r, o, path));
  });
  r.each(*root, "pools", "deployment", false, [&](const json::object& o, const std::string& path) {
    d.pools.push_back(pool_from_json(r, o, path));
  });
  if (r.failed()) return make_error(r.err, 2);
  return d;
}

}  // namespace agifarm::plan

namespace agifarm::plan::detail {

json::object to_json(const device_memory& m) {
  return {{"name", m.name},
          {"model_bytes", m.model_bytes},
          {"context_bytes", m.context_bytes},
          {"compute_bytes", m.compute_bytes},
          {"total_bytes", m.total_bytes}};
}

}  // namespace agifarm::plan::detail
