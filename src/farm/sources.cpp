#include "farm/sources.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "farm/state.hpp"
#include "fit/fit.hpp"
#include "synth/tiny.hpp"

#if __has_include("plan/planner.hpp")
#include "farm/memory_feedback_plan.hpp"
#include "gguf/gguf.hpp"
#include "hw/hw.hpp"
#include "plan/memory_model.hpp"
#include "plan/planner.hpp"
#include "plan/server_args.hpp"
#include "plan/speed_inputs.hpp"
#include "plan/speed_model.hpp"
#define AGIFARM_HAVE_PLANNER 1
#endif

namespace agifarm::farm {
namespace fs = std::filesystem;

result<plan::deployment> deployment_from_plan_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("cannot read plan file {}", path), 2);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return deployment_from_plan_text(text, path);
}

result<plan::deployment> deployment_from_plan_text(std::string_view text, const std::string& where) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec) return make_error(fmt::format("{}: not JSON: {}", where, ec.message()), 2);
  const boost::json::value* d = &v;
  if (auto* o = v.if_object(); o && o->contains("deployment")) d = &o->at("deployment");
  auto r = plan::deployment_from_json(*d);
  if (!r) return make_error(fmt::format("{}: {}", where, r.err().message), 2);
  if (r->backends.empty()) return make_error(fmt::format("{}: the deployment has no backends", where), 2);
  return r;
}

result<plan::deployment> replica_deployment(const farm_file& f) {
  if (f.models.empty())
    return make_error(
        fmt::format("{}: no models (add `models: {{name: file.gguf}}`)", f.path.empty() ? "farm" : f.path),
        2);
  auto refuse = [&](const std::string& model, const std::string& s) -> error {
    return make_error(
        fmt::format("{}: strategy '{}' for {} needs a plan: run `agifarm plan {} --json > plan.json` "
                    "and `agifarm up --plan plan.json` (`up` itself only runs replicas without one)",
                    f.path, s, model, f.path),
        2);
  };
  if (!f.strategy.empty() && f.strategy != "replica") return refuse("all models", f.strategy);
  plan::deployment d;
  d.strategy = "replica";
  for (const auto& m : f.models) {
    if (auto it = f.strategy_per_model.find(m.name);
        it != f.strategy_per_model.end() && it->second != "replica")
      return refuse(m.name, it->second);
    int agents = 0, ctx = 0;
    plan::pool_spec pool;
    pool.name = m.name;
    for (const auto& r : f.roles) {
      if (r.model != m.name) continue;
      agents += r.agents;
      ctx = std::max(ctx, r.ctx);
      pool.aliases.push_back(r.name);
    }
    if (agents == 0) agents = 1;
    if (ctx == 0) ctx = 4096;
    for (int i = 0; i < m.replicas; ++i) {
      plan::backend_spec b;
      b.name = fmt::format("{}-r{}", m.name, i);
      b.kind = plan::backend_kind::llama_server;
      b.model = m.name;
      b.model_file = m.file;
      b.slots = agents;
      b.ctx = ctx * agents;
      b.args = {"-m", m.file, "-c", std::to_string(b.ctx), "-np", std::to_string(agents)};
      b.args.insert(b.args.end(), m.args.begin(), m.args.end());
      pool.backends.push_back(b.name);
      d.backends.push_back(std::move(b));
    }
    d.pools.push_back(std::move(pool));
  }
  return d;
}

bool planner_available() {
#ifdef AGIFARM_HAVE_PLANNER
  return true;
#else
  return false;
#endif
}

void predict_on_this_machine(plan::deployment& d) {
#ifdef AGIFARM_HAVE_PLANNER
  // Deployments built here (the demo, `strategy: replica`) run their backends on this machine's CPU
  // and RAM, which is what these predictions assume; planner deployments carry their own.
  std::optional<hw::discovery> local;
  for (auto& b : d.backends) {
    if (b.predicted || b.kind != plan::backend_kind::llama_server) continue;
    if (!local) {
      auto cat = hw::load_default_catalogue();
      if (!cat) return;
      auto disc = hw::discover_local(hw::real_system(), *cat);
      if (!disc) return;
      local = std::move(*disc);
    }
    if (!local->local.gpus.empty()) return;  // GPU placement is the planner's job (`agifarm plan`)
    auto args = plan::parse_server_args(b.args);
    if (!args) continue;
    auto shape = plan::load_model_shape(b.model_file);
    if (!shape) continue;
    auto est = plan::estimate_memory(*shape, *args, {});
    if (!est) continue;
    plan::speed_input in;
    in.shape = &*shape;
    in.placement = &*est;
    in.host = plan::host_unit(local->local);  // the planner's defaults where discovery lacks a figure
    in.slots = est->n_slots;
    auto speed = plan::estimate_speed(in);
    plan::backend_prediction p;
    p.host = est->host;
    p.decode_tps = speed.decode_tps;
    p.prefill_tps = speed.prefill_tps;
    p.aggregate_decode_tps = speed.aggregate_decode_tps;
    b.predicted = p;
  }
#else
  (void)d;
#endif
}

namespace {
// The farm file restricted to some models (and the roles that name them).
farm_file subset(const farm_file& f, const std::function<bool(const model_entry&)>& keep) {
  farm_file out = f;
  out.models.clear();
  out.roles.clear();
  for (const auto& m : f.models)
    if (keep(m)) out.models.push_back(m);
  for (const auto& r : f.roles)
    if (find_model(out, r.model)) out.roles.push_back(r);
  return out;
}
}  // namespace

result<plan::deployment> planned_deployment(const farm_file& f, std::vector<std::string>& notes,
                                            const std::string& memory_file, plan::plan_document* document) {
  if (!has_on_demand(f)) {
    auto doc = plan_farm_file(f, notes, memory_file);
    if (!doc) return doc.err();
    if (document) *document = *doc;
    return doc->chosen;
  }
  // On-demand models need not fit together: the always-on ones are planned together, each
  // on-demand model alone on the whole machine (farm/on_demand.hpp decides at run time what runs).
  plan::deployment out;
  auto add = [&](const farm_file& part) -> status {
    if (part.models.empty()) return status::success();
    auto doc = plan_farm_file(part, notes, memory_file);
    if (!doc) return doc.err();
    if (out.strategy.empty())
      out.strategy = doc->chosen.strategy;
    else if (out.strategy != doc->chosen.strategy)
      out.strategy = "hybrid";
    for (auto& b : doc->chosen.backends) {
      for (const auto& o : out.backends)
        if (o.name == b.name)
          return make_error(
              fmt::format("{}: the plans of two models both name a backend '{}'; give `strategy: replica` "
                          "or a --plan for this farm",
                          f.path.empty() ? "farm" : f.path, b.name),
              2);
      out.backends.push_back(std::move(b));
    }
    for (auto& p : doc->chosen.pools) out.pools.push_back(std::move(p));
    return status::success();
  };
  if (auto st = add(subset(f, [](const model_entry& m) { return !m.on_demand; })); !st) return st.err();
  for (const auto& m : f.models)
    if (m.on_demand)
      if (auto st = add(subset(f, [&](const model_entry& x) { return x.name == m.name; })); !st)
        return st.err();
  return out;
}

result<plan::plan_document> plan_farm_file(const farm_file& f, std::vector<std::string>& notes,
                                           const std::string& memory_file) {
#ifdef AGIFARM_HAVE_PLANNER
  const std::string where = f.path.empty() ? "farm" : f.path;
  if (f.models.empty())
    return make_error(fmt::format("{}: no models (add `models: {{name: file.gguf}}`)", where), 2);
  auto cat = hw::load_default_catalogue();
  if (!cat) return cat.err();
  hw::inventory inv;
  if (!f.inventory.empty()) {
    auto r = hw::load_inventory(f.inventory, *cat);
    if (!r) return r.err();
    inv = std::move(*r);
  } else {
    auto d = hw::discover_local(hw::real_system(), *cat, {});
    if (!d) return d.err();
    inv = hw::local_inventory(d->local);
    notes.insert(notes.end(), d->notes.begin(), d->notes.end());
  }
  std::vector<plan::plan_model> models;
  for (const auto& m : f.models) {
    auto g = gguf::read_model(m.file);
    if (!g)
      return make_error(fmt::format("{}: model {}: {}", where, m.name, g.err().message), g.err().exit_code);
    plan::plan_model pm;
    pm.name = m.name;
    pm.shape = plan::model_shape_of(*g);
    pm.shape.file = m.file;
    pm.shape.name = m.name;
    // Architectures whose graph agifarm does not replay: llama.cpp measures their compute buffers.
    if (auto note = fit::calibrate_compute(pm.shape, f.llama_bin.empty() ? default_llama_bin() : f.llama_bin);
        !note.empty())
      notes.push_back(note);
    models.push_back(std::move(pm));
  }
  std::vector<plan::role_request> roles;
  for (const auto& r : f.roles) roles.push_back({r.name, r.model, r.ctx, r.agents});
  plan::plan_options opt;
  if (!memory_file
           .empty()) {  // measured memory of earlier farms sizes the margins (farm/memory_feedback.hpp)
    std::vector<model_ref> refs;
    for (const auto& m : f.models) refs.push_back({m.name, m.file});
    for (auto& l : apply_memory_feedback(memory_file, refs, inv, opt)) notes.push_back(std::move(l));
  }
  auto doc = plan::make_plan(inv, models, roles, opt);
  if (!doc) return doc.err();
  if (!plan::plan_fits(*doc)) {
    std::string why;
    for (const auto& c : doc->candidates)
      if (!c.feasible && !c.why_not.empty())
        why += fmt::format("\n  {} {}: {}{}", c.model, c.strategy, c.why_not,
                           c.fix.empty() ? "" : " (" + c.fix + ")");
    return make_error(fmt::format("{}: no strategy fits this hardware:{}", where, why), 3);
  }
  for (const auto& r : doc->recommendation.reasons) notes.push_back("plan: " + r);
  return std::move(*doc);
#else
  (void)f;
  (void)notes;
  return make_error("the planner library is not built into this agifarm", 1);
#endif
}

plan::deployment demo_deployment(const std::string& model_file) {
  plan::deployment d;
  d.strategy = "replica";
  plan::pool_spec pool;
  pool.name = k_demo_model_name;
  pool.aliases = {"fast", "code", "think"};
  for (int i = 0; i < 2; ++i) {
    plan::backend_spec b;
    b.name = fmt::format("{}-r{}", k_demo_model_name, i);
    b.model = k_demo_model_name;
    b.model_file = model_file;
    b.slots = 2;
    b.ctx = 4096;
    b.args = {"-m", model_file, "-c", "4096", "-np", "2", "-t", "1"};
    pool.backends.push_back(b.name);
    d.backends.push_back(std::move(b));
  }
  d.pools.push_back(std::move(pool));
  return d;
}

result<bool> ensure_demo_model(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && fs::file_size(path, ec) > 0) return false;
  fs::create_directories(fs::path(path).parent_path(), ec);
  std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  synth::tiny_params p;
  p.arch = "qwen3";
  p.name = k_demo_model_name;
  auto r = synth::write_tiny_model(p, tmp);
  if (!r) {
    fs::remove(tmp, ec);
    return make_error(fmt::format("cannot synthesize the demo model {}: {}", path, r.err().message));
  }
  fs::rename(tmp, path, ec);
  if (ec) return make_error(fmt::format("cannot write {}: {}", path, ec.message()));
  return true;
}

status check_runnable(const plan::deployment& d, runnable_check mode) {
  if (d.backends.empty()) return make_error("the deployment has no backends", 2);
  std::set<std::string> llama;
  for (const auto& b : d.backends) {
    if (mode != runnable_check::multi_node && b.node != "local" && !b.node.empty())
      return make_error(
          fmt::format("backend '{}' runs on node '{}': this machine cannot run it (a multi-node "
                      "farm is started by `agifarm up farm.yaml`, whose inventory gives the node `ssh:`)",
                      b.name, b.node),
          2);
    if (b.kind == plan::backend_kind::llama_server) llama.insert(b.name);
  }
  if (mode == runnable_check::node_part) return status::success();
  if (d.pools.empty()) return make_error("the deployment has no pools (nothing for the gateway to serve)", 2);
  for (const auto& p : d.pools)
    for (const auto& b : p.backends)
      if (!llama.count(b))
        return make_error(
            fmt::format("pool '{}': backend '{}' is not a llama-server of this deployment", p.name, b), 2);
  return status::success();
}

}  // namespace agifarm::farm
