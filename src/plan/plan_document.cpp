#include "plan/plan_document.hpp"

#include <fmt/format.h>

#include "plan/json_reader.hpp"

namespace agifarm::plan {
namespace json = boost::json;

namespace {

using detail::reader;

json::array strings(const std::vector<std::string>& v) { return json::array(v.begin(), v.end()); }

}  // namespace

json::object to_json(const plan_document& d) {
  json::array nodes;
  for (const auto& n : d.inventory.nodes) {
    json::array gpus;
    for (const auto& g : n.gpus)
      gpus.push_back(json::object{{"index", g.index},
                                  {"name", g.name},
                                  {"vendor", g.vendor},
                                  {"vram_bytes", g.vram_bytes},
                                  {"bandwidth_bytes_per_s", g.bandwidth_bytes_per_s},
                                  {"fp16_tflops", g.fp16_tflops}});
    nodes.push_back(json::object{{"name", n.name},
                                 {"address", n.address},
                                 {"gpus", gpus},
                                 {"cpu_cores", n.cpu_cores},
                                 {"ram_bytes", n.ram_bytes},
                                 {"ram_bandwidth_bytes_per_s", n.ram_bandwidth_bytes_per_s}});
  }
  json::array links;
  for (const auto& l : d.inventory.links)
    links.push_back(json::object{{"kind", l.kind},
                                 {"node_a", l.node_a},
                                 {"node_b", l.node_b},
                                 {"gpus", json::array(l.gpus.begin(), l.gpus.end())},
                                 {"bandwidth_bytes_per_s", l.bandwidth_bytes_per_s},
                                 {"latency_s", l.latency_s}});
  json::array models;
  for (const auto& m : d.models)
    models.push_back(json::object{{"name", m.name},
                                  {"file", m.file},
                                  {"architecture", m.architecture},
                                  {"hf_repo", m.hf_repo},
                                  {"n_params", m.n_params},
                                  {"file_bytes", m.file_bytes},
                                  {"n_layers", m.n_layers},
                                  {"n_experts", m.n_experts},
                                  {"quant", m.quant},
                                  {"known_architecture", m.known_architecture}});
  json::array roles;
  for (const auto& r : d.roles)
    roles.push_back(json::object{{"name", r.name}, {"model", r.model}, {"ctx", r.ctx}, {"agents", r.agents}});
  json::array cands;
  for (const auto& c : d.candidates) {
    json::array devs;
    for (const auto& m : c.devices) devs.push_back(detail::to_json(m));
    cands.push_back(json::object{{"model", c.model},
                                 {"role", c.role},
                                 {"strategy", c.strategy},
                                 {"summary", c.summary},
                                 {"feasible", c.feasible},
                                 {"why_not", c.why_not},
                                 {"fix", c.fix},
                                 {"devices", devs},
                                 {"device_capacity_bytes", json::array(c.device_capacity_bytes.begin(),
                                                                       c.device_capacity_bytes.end())},
                                 {"decode_tps", c.decode_tps},
                                 {"prefill_tps", c.prefill_tps},
                                 {"aggregate_decode_tps", c.aggregate_decode_tps},
                                 {"max_ctx", c.max_ctx},
                                 {"agents", c.agents},
                                 {"pros", strings(c.pros)},
                                 {"cons", strings(c.cons)},
                                 {"score", c.score}});
  }
  return {{"version", d.version},
          {"inventory", json::object{{"nodes", nodes}, {"links", links}}},
          {"models", models},
          {"roles", roles},
          {"candidates", cands},
          {"recommendation", json::object{{"strategy", d.recommendation.strategy},
                                          {"candidate", d.recommendation.candidate},
                                          {"reasons", strings(d.recommendation.reasons)},
                                          {"runner_up", d.recommendation.runner_up},
                                          {"runner_up_candidate", d.recommendation.runner_up_candidate},
                                          {"runner_up_gain", d.recommendation.runner_up_gain}}},
          {"deployment", to_json(d.chosen)},
          {"warnings", strings(d.warnings)},
          {"notes", strings(d.notes)}};
}

namespace {

doc_node node_from_json(reader& r, const json::object& o, const std::string& p) {
  doc_node n;
  n.name = r.str(o, "name", p, true);
  n.address = r.str(o, "address", p);
  r.each(o, "gpus", p, false, [&](const json::object& g, const std::string& gp) {
    doc_gpu x;
    x.index = r.i32(g, "index", gp);
    x.name = r.str(g, "name", gp);
    x.vendor = r.str(g, "vendor", gp);
    x.vram_bytes = r.u64(g, "vram_bytes", gp);
    x.bandwidth_bytes_per_s = r.num(g, "bandwidth_bytes_per_s", gp);
    x.fp16_tflops = r.num(g, "fp16_tflops", gp);
    n.gpus.push_back(std::move(x));
  });
  n.cpu_cores = r.i32(o, "cpu_cores", p);
  n.ram_bytes = r.u64(o, "ram_bytes", p);
  n.ram_bandwidth_bytes_per_s = r.num(o, "ram_bandwidth_bytes_per_s", p);
  return n;
}

doc_link link_from_json(reader& r, const json::object& o, const std::string& p) {
  doc_link l;
  l.kind = r.str(o, "kind", p, true);
  if (!r.failed() && l.kind != "pcie" && l.kind != "nvlink" && l.kind != "ethernet")
    r.fail(p + ".kind", "unknown link kind '" + l.kind + "' (pcie, nvlink or ethernet)");
  l.node_a = r.str(o, "node_a", p);
  l.node_b = r.str(o, "node_b", p);
  l.gpus = r.ints(o, "gpus", p);
  l.bandwidth_bytes_per_s = r.num(o, "bandwidth_bytes_per_s", p);
  l.latency_s = r.num(o, "latency_s", p);
  return l;
}

doc_model model_from_json(reader& r, const json::object& o, const std::string& p) {
  doc_model m;
  m.name = r.str(o, "name", p, true);
  m.file = r.str(o, "file", p);
  m.architecture = r.str(o, "architecture", p);
  m.hf_repo = r.str(o, "hf_repo", p);
  m.n_params = r.u64(o, "n_params", p);
  m.file_bytes = r.u64(o, "file_bytes", p);
  m.n_layers = r.u64(o, "n_layers", p);
  m.n_experts = r.u64(o, "n_experts", p);
  m.quant = r.str(o, "quant", p);
  m.known_architecture = r.boolean(o, "known_architecture", p, true);
  return m;
}

doc_role role_from_json(reader& r, const json::object& o, const std::string& p) {
  doc_role x;
  x.name = r.str(o, "name", p, true);
  x.model = r.str(o, "model", p);
  x.ctx = r.i32(o, "ctx", p);
  x.agents = r.i32(o, "agents", p, 1);
  if (!r.failed() && (x.ctx < 0 || x.agents < 0)) r.fail(p, "ctx and agents must not be negative");
  return x;
}

doc_candidate candidate_from_json(reader& r, const json::object& o, const std::string& p) {
  doc_candidate c;
  c.model = r.str(o, "model", p);
  c.role = r.str(o, "role", p);
  c.strategy = r.str(o, "strategy", p, true);
  c.summary = r.str(o, "summary", p);
  c.feasible = r.boolean(o, "feasible", p, false);
  c.why_not = r.str(o, "why_not", p);
  c.fix = r.str(o, "fix", p);
  if (auto* a = r.array(o, "devices", p, false))
    for (std::size_t i = 0; i < a->size() && !r.failed(); ++i)
      c.devices.push_back(r.memory((*a)[i], fmt::format("{}.devices[{}]", p, i)));
  if (auto* a = r.array(o, "device_capacity_bytes", p, false))
    for (std::size_t i = 0; i < a->size() && !r.failed(); ++i) {
      if (auto* u = (*a)[i].if_uint64())
        c.device_capacity_bytes.push_back(*u);
      else if (auto* s = (*a)[i].if_int64(); s && *s >= 0)
        c.device_capacity_bytes.push_back(static_cast<std::uint64_t>(*s));
      else
        r.fail(fmt::format("{}.device_capacity_bytes[{}]", p, i), "expected a non-negative integer");
    }
  c.decode_tps = r.num(o, "decode_tps", p);
  c.prefill_tps = r.num(o, "prefill_tps", p);
  c.aggregate_decode_tps = r.num(o, "aggregate_decode_tps", p);
  c.max_ctx = r.i32(o, "max_ctx", p);
  c.agents = r.i32(o, "agents", p);
  c.pros = r.strs(o, "pros", p);
  c.cons = r.strs(o, "cons", p);
  c.score = r.num(o, "score", p);
  return c;
}

// n_candidates: the recommendation's indices must point into the candidates.
doc_recommendation recommendation_from_json(reader& r, const json::object& o, std::size_t n_candidates) {
  doc_recommendation rec;
  rec.strategy = r.str(o, "strategy", "recommendation");
  rec.candidate = r.i32(o, "candidate", "recommendation", -1);
  rec.reasons = r.strs(o, "reasons", "recommendation");
  rec.runner_up = r.str(o, "runner_up", "recommendation");
  rec.runner_up_candidate = r.i32(o, "runner_up_candidate", "recommendation", -1);
  rec.runner_up_gain = r.num(o, "runner_up_gain", "recommendation");
  if (!r.failed() && rec.runner_up_candidate >= static_cast<int>(n_candidates))
    r.fail("recommendation.runner_up_candidate",
           fmt::format("index {} but only {} candidates", rec.runner_up_candidate, n_candidates));
  if (!r.failed() && rec.candidate >= static_cast<int>(n_candidates))
    r.fail("recommendation.candidate",
           fmt::format("index {} but only {} candidates", rec.candidate, n_candidates));
  return rec;
}

}  // namespace

result<plan_document> plan_document_from_json(const json::value& v) {
  reader r;
  plan_document d;
  const json::object* root = r.object(v, "(root)");
  if (!root) return make_error(r.err, 2);
  d.version = r.i32(*root, "version", "", 0);
  if (!r.failed() && !root->contains("version")) r.fail("version", "missing");
  if (!r.failed() && d.version != k_plan_format_version)
    r.fail("version",
           fmt::format("unsupported version {} (this agifarm reads {})", d.version, k_plan_format_version));
  if (auto* inv = root->if_contains("inventory"); inv && !r.failed()) {
    if (auto* io = r.object(*inv, "inventory")) {
      r.each(*io, "nodes", "inventory", false, [&](const json::object& o, const std::string& p) {
        d.inventory.nodes.push_back(node_from_json(r, o, p));
      });
      r.each(*io, "links", "inventory", false, [&](const json::object& o, const std::string& p) {
        d.inventory.links.push_back(link_from_json(r, o, p));
      });
    }
  }
  r.each(*root, "models", "", false,
         [&](const json::object& o, const std::string& p) { d.models.push_back(model_from_json(r, o, p)); });
  r.each(*root, "roles", "", false,
         [&](const json::object& o, const std::string& p) { d.roles.push_back(role_from_json(r, o, p)); });
  r.each(*root, "candidates", "", false, [&](const json::object& o, const std::string& p) {
    d.candidates.push_back(candidate_from_json(r, o, p));
  });
  if (auto* rec = root->if_contains("recommendation"); rec && !r.failed())
    if (auto* o = r.object(*rec, "recommendation"))
      d.recommendation = recommendation_from_json(r, *o, d.candidates.size());
  d.warnings = r.strs(*root, "warnings", "");
  d.notes = r.strs(*root, "notes", "");
  if (r.failed()) return make_error(r.err, 2);
  if (auto* dep = root->if_contains("deployment")) {
    auto res = deployment_from_json(*dep);
    if (!res) return res.err();
    d.chosen = std::move(res).value();
  }
  return d;
}

result<plan_document> parse_plan_document(std::string_view text) {
  boost::system::error_code ec;
  json::parse_options opt;
  opt.max_depth = 64;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, opt);
  if (ec) return make_error(fmt::format("plan JSON: not valid JSON: {}", ec.message()), 2);
  return plan_document_from_json(v);
}

}  // namespace agifarm::plan
