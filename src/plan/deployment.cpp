#include "plan/deployment.hpp"

#include "common/ot_rules.hpp"

#include <cmath>

#include <fmt/format.h>

namespace agifarm::plan {
namespace json = boost::json;

std::string to_string(backend_kind k) { return k == backend_kind::llama_server ? "llama-server" : "ggml-rpc-server"; }
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

json::object memory_to_json(const device_memory& m) {
  return {{"name", m.name}, {"model_bytes", m.model_bytes}, {"context_bytes", m.context_bytes},
          {"compute_bytes", m.compute_bytes}, {"total_bytes", m.total_bytes}};
}

json::array strings_to_json(const std::vector<std::string>& v) { return json::array(v.begin(), v.end()); }

// A tiny reader that records the JSON path of the first error, so messages say where things broke.
struct reader {
  std::string err;
  bool failed() const { return !err.empty(); }
  void fail(const std::string& path, const std::string& what) {
    if (err.empty()) err = fmt::format("plan JSON at {}: {}", path, what);
  }
  const json::object* object(const json::value& v, const std::string& path) {
    if (auto* o = v.if_object()) return o;
    fail(path, "expected an object");
    return nullptr;
  }
  std::string string(const json::object& o, const char* key, const std::string& path, bool required = true) {
    auto* v = o.if_contains(key);
    if (!v) { if (required) fail(path + "." + key, "missing"); return {}; }
    if (auto* s = v->if_string()) return std::string(*s);
    fail(path + "." + key, "expected a string");
    return {};
  }
  std::int64_t integer(const json::object& o, const char* key, const std::string& path, std::int64_t dflt) {
    auto* v = o.if_contains(key);
    if (!v) return dflt;
    if (auto* i = v->if_int64()) return *i;
    if (auto* u = v->if_uint64()) return static_cast<std::int64_t>(*u);
    fail(path + "." + key, "expected an integer");
    return dflt;
  }
  double number(const json::object& o, const char* key, const std::string& path) {
    auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_number()) {
      // 1e400 parses as infinity, which JSON cannot carry back out.
      double d = v->to_number<double>();
      if (std::isfinite(d)) return d;
    }
    fail(path + "." + key, "expected a finite number");
    return 0;
  }
  std::vector<std::string> strings(const json::object& o, const char* key, const std::string& path) {
    std::vector<std::string> out;
    auto* v = o.if_contains(key);
    if (!v) return out;
    auto* a = v->if_array();
    if (!a) { fail(path + "." + key, "expected an array of strings"); return out; }
    for (std::size_t i = 0; i < a->size(); ++i) {
      if (auto* s = (*a)[i].if_string()) out.emplace_back(*s);
      else fail(fmt::format("{}.{}[{}]", path, key, i), "expected a string");
    }
    return out;
  }
  device_memory memory(const json::value& v, const std::string& path) {
    device_memory m;
    auto* o = object(v, path);
    if (!o) return m;
    m.name = string(*o, "name", path, false);
    m.model_bytes = static_cast<std::uint64_t>(integer(*o, "model_bytes", path, 0));
    m.context_bytes = static_cast<std::uint64_t>(integer(*o, "context_bytes", path, 0));
    m.compute_bytes = static_cast<std::uint64_t>(integer(*o, "compute_bytes", path, 0));
    m.total_bytes = static_cast<std::uint64_t>(integer(*o, "total_bytes", path, 0));
    return m;
  }
};

}  // namespace

json::object to_json(const deployment& d) {
  json::array backends;
  for (const auto& b : d.backends) {
    json::object env;
    for (const auto& [k, v] : b.env) env[k] = v;
    json::object o{{"name", b.name}, {"kind", to_string(b.kind)}, {"node", b.node}, {"model", b.model},
                   {"model_file", b.model_file}, {"gpus", json::array(b.gpus.begin(), b.gpus.end())},
                   {"host", b.host}, {"port", b.port}, {"args", strings_to_json(b.args)}, {"env", env},
                   {"depends_on", strings_to_json(b.depends_on)}, {"slots", b.slots}, {"ctx", b.ctx}};
    if (b.predicted) {
      json::array devs;
      for (const auto& m : b.predicted->devices) devs.push_back(memory_to_json(m));
      o["predicted"] = json::object{{"devices", devs}, {"host", memory_to_json(b.predicted->host)},
                                    {"decode_tps", b.predicted->decode_tps},
                                    {"prefill_tps", b.predicted->prefill_tps},
                                    {"aggregate_decode_tps", b.predicted->aggregate_decode_tps}};
    }
    backends.push_back(std::move(o));
  }
  json::array pools;
  for (const auto& p : d.pools) {
    pools.push_back(json::object{{"name", p.name}, {"aliases", strings_to_json(p.aliases)},
                                 {"backends", strings_to_json(p.backends)}, {"balance", to_string(p.balance)},
                                 {"priority", p.priority}});
  }
  return {{"strategy", d.strategy}, {"backends", backends}, {"pools", pools}};
}

result<deployment> deployment_from_json(const json::value& v) {
  reader r;
  deployment d;
  const json::object* root = r.object(v, "deployment");
  if (!root) return make_error(r.err, 2);
  d.strategy = r.string(*root, "strategy", "deployment", false);
  if (auto* bs = root->if_contains("backends")) {
    auto* arr = bs->if_array();
    if (!arr) r.fail("deployment.backends", "expected an array");
    for (std::size_t i = 0; arr && i < arr->size() && !r.failed(); ++i) {
      std::string path = fmt::format("deployment.backends[{}]", i);
      auto* o = r.object((*arr)[i], path);
      if (!o) break;
      backend_spec b;
      b.name = r.string(*o, "name", path);
      std::string kind = r.string(*o, "kind", path, false);
      if (kind == "ggml-rpc-server") b.kind = backend_kind::rpc_server;
      else if (kind.empty() || kind == "llama-server") b.kind = backend_kind::llama_server;
      else r.fail(path + ".kind", "unknown kind '" + kind + "' (llama-server or ggml-rpc-server)");
      b.node = r.string(*o, "node", path, false);
      if (b.node.empty()) b.node = "local";
      b.model = r.string(*o, "model", path, false);
      b.model_file = r.string(*o, "model_file", path, false);
      if (auto* g = o->if_contains("gpus"); g && g->is_array())
        for (auto& x : g->as_array()) if (x.is_int64()) b.gpus.push_back(static_cast<int>(x.as_int64()));
      b.host = r.string(*o, "host", path, false);
      if (b.host.empty()) b.host = "127.0.0.1";
      b.port = static_cast<int>(r.integer(*o, "port", path, 0));
      if (b.port < 0 || b.port > 65535) r.fail(path + ".port", "out of range 0..65535");
      b.args = r.strings(*o, "args", path);
      if (auto* e = o->if_contains("env"); e && e->is_object())
        for (auto& [k, val] : e->as_object()) if (val.is_string()) b.env[std::string(k)] = std::string(val.as_string());
      b.depends_on = r.strings(*o, "depends_on", path);
      b.slots = static_cast<int>(r.integer(*o, "slots", path, 1));
      b.ctx = static_cast<int>(r.integer(*o, "ctx", path, 0));
      if (auto* p = o->if_contains("predicted"); p && p->is_object()) {
        backend_prediction pr;
        const auto& po = p->as_object();
        if (auto* devs = po.if_contains("devices"); devs && devs->is_array())
          for (std::size_t j = 0; j < devs->as_array().size(); ++j)
            pr.devices.push_back(r.memory(devs->as_array()[j], fmt::format("{}.predicted.devices[{}]", path, j)));
        if (auto* h = po.if_contains("host")) pr.host = r.memory(*h, path + ".predicted.host");
        pr.decode_tps = r.number(po, "decode_tps", path + ".predicted");
        pr.prefill_tps = r.number(po, "prefill_tps", path + ".predicted");
        pr.aggregate_decode_tps = r.number(po, "aggregate_decode_tps", path + ".predicted");
        b.predicted = pr;
      }
      d.backends.push_back(std::move(b));
    }
  }
  if (auto* ps = root->if_contains("pools"); ps && !r.failed()) {
    auto* arr = ps->if_array();
    if (!arr) r.fail("deployment.pools", "expected an array");
    for (std::size_t i = 0; arr && i < arr->size() && !r.failed(); ++i) {
      std::string path = fmt::format("deployment.pools[{}]", i);
      auto* o = r.object((*arr)[i], path);
      if (!o) break;
      pool_spec p;
      p.name = r.string(*o, "name", path);
      p.aliases = r.strings(*o, "aliases", path);
      p.backends = r.strings(*o, "backends", path);
      std::string bal = r.string(*o, "balance", path, false);
      if (bal == "prefix_affinity") p.balance = balance_policy::prefix_affinity;
      else if (!bal.empty() && bal != "least_outstanding")
        r.fail(path + ".balance", "unknown policy '" + bal + "' (least_outstanding or prefix_affinity)");
      p.priority = static_cast<int>(r.integer(*o, "priority", path, 0));
      d.pools.push_back(std::move(p));
    }
  }
  if (r.failed()) return make_error(r.err, 2);
  return d;
}

}  // namespace agifarm::plan
