// The planner's shared helpers: a placement's command line and devices, its evaluation (memory, speed,
// fit), the largest context that fits, and what would make it fit.
#include <fmt/format.h>

#include <algorithm>

#include "plan/devices.hpp"
#include "plan/planner_internal.hpp"
#include "plan/speed_inputs.hpp"

namespace agifarm::plan::detail {

namespace {

std::string rpc_endpoint(const hw::inventory& inv, gpu_ref r, const plan_options& opt) {
  return fmt::format("{}:{}", inv.nodes[r.node].address, opt.rpc_base_port + r.gpu);
}

std::vector<gpu_ref> devices_in_order(const placement& p) {
  std::vector<gpu_ref> all = p.remote;
  all.insert(all.end(), p.local.begin(), p.local.end());
  return all;
}

// Sets p.fits / p.why_not from the estimate: every GPU within its VRAM less the margin, the main node's
// RAM within its size less the reserve. The first device that does not fit is the one named.
void check_fit(const planner_ctx& pc, const std::vector<gpu_ref>& all, placement& p) {
  p.dev_names.clear();
  p.caps.clear();
  p.fits = true;
  p.why_not.clear();
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto& node = pc.inv.nodes[all[i].node];
    const auto& g = node.gpus[all[i].gpu];
    p.dev_names.push_back(fmt::format("{}/gpu{}", node.name, g.index));
    p.caps.push_back(g.vram_bytes);
    std::uint64_t limit =
        g.vram_bytes > pc.opt.device_margin_bytes ? g.vram_bytes - pc.opt.device_margin_bytes : 0;
    const auto& u = p.est.devices[i];
    if (u.total_bytes > limit && p.fits) {
      p.fits = false;
      p.why_not = fmt::format(
          "{} ({} {}) needs {} (weights {} + KV {} + compute {}) but has {} with a {} margin",
          p.dev_names.back(), g.name, gib(g.vram_bytes), gib(u.total_bytes), gib(u.model_bytes),
          gib(u.context_bytes), gib(u.compute_bytes), gib(limit), gib(pc.opt.device_margin_bytes));
    }
  }
  const auto& main = pc.inv.nodes[p.main_node];
  p.host_cap = main.ram_bytes;
  std::uint64_t host_limit =
      main.ram_bytes > pc.opt.host_reserve_bytes ? main.ram_bytes - pc.opt.host_reserve_bytes : 0;
  if (main.ram_bytes > 0 && p.est.host.total_bytes > host_limit && p.fits) {
    p.fits = false;
    p.why_not = fmt::format("system RAM of {} needs {} (weights {}) but has {} after a {} reserve", main.name,
                            gib(p.est.host.total_bytes), gib(p.est.host.model_bytes), gib(host_limit),
                            gib(pc.opt.host_reserve_bytes));
  }
}

}  // namespace

std::string gib(std::uint64_t b) { return fmt::format("{:.1f} GiB", static_cast<double>(b) / k_gib); }

const hw::gpu& gpu_of(const hw::inventory& inv, gpu_ref r) { return inv.nodes[r.node].gpus[r.gpu]; }

gpu_ref biggest_gpu(const planner_ctx& pc) {
  gpu_ref best = pc.all_gpus.front();
  for (auto r : pc.all_gpus)
    if (gpu_of(pc.inv, r).vram_bytes > gpu_of(pc.inv, best).vram_bytes) best = r;
  return best;
}

std::vector<gpu_ref> gpus_of_node(const hw::inventory& inv, int node) {
  std::vector<gpu_ref> out;
  for (int g = 0; g < static_cast<int>(inv.nodes[node].gpus.size()); ++g) out.push_back({node, g});
  return out;
}

planner_ctx make_planner_ctx(const hw::inventory& inv, const plan_options& opt) {
  planner_ctx pc{inv, opt, {}, 0, -1};
  for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
    for (int g = 0; g < static_cast<int>(inv.nodes[n].gpus.size()); ++g) pc.all_gpus.push_back({n, g});
  for (auto r : pc.all_gpus) pc.biggest_vram = std::max(pc.biggest_vram, gpu_of(inv, r).vram_bytes);
  for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
    if (inv.nodes[n].gpus.size() >= 2 &&
        (pc.best_node < 0 || inv.nodes[n].total_vram_bytes() > inv.nodes[pc.best_node].total_vram_bytes()))
      pc.best_node = n;
  return pc;
}

std::vector<std::string> server_argv(const planner_ctx& pc, const model_shape& m, const placement& p) {
  std::vector<std::string> a{"-m",   m.file,
                             "-c",   std::to_string(p.ctx),
                             "-np",  std::to_string(p.slots),
                             "-ngl", p.local.empty() && p.remote.empty() ? "0" : "999"};
  if (p.slots > 1) a.push_back("--kv-unified");
  if (pc.opt.kv_type != "f16") a.insert(a.end(), {"-ctk", pc.opt.kv_type, "-ctv", pc.opt.kv_type});
  const auto all = devices_in_order(p);
  if (all.size() > 1) {
    std::string ts;
    for (std::size_t i = 0; i < all.size(); ++i)
      ts += fmt::format("{}{}", i ? "," : "",
                        std::max<std::uint64_t>(1, gpu_of(pc.inv, all[i]).vram_bytes >> 30));
    a.insert(a.end(), {"-ts", ts});
  }
  if (p.row_split) a.insert(a.end(), {"-sm", "row"});
  if (!p.remote.empty()) {
    std::string rpc;
    for (std::size_t i = 0; i < p.remote.size(); ++i)
      rpc += (i ? "," : "") + rpc_endpoint(pc.inv, p.remote[i], pc.opt);
    a.insert(a.end(), {"--rpc", rpc});
  }
  if (!p.ot.empty()) {
    std::string ot;
    for (std::size_t i = 0; i < p.ot.size(); ++i) ot += (i ? "," : "") + p.ot[i];
    a.insert(a.end(), {"-ot", ot});
  }
  return a;
}

std::vector<device_desc> devices_of(const planner_ctx& pc, const placement& p) {
  std::vector<std::string> eps;
  for (auto r : p.remote) eps.push_back(rpc_endpoint(pc.inv, r, pc.opt));
  std::vector<device_desc> d = rpc_devices(eps);
  for (std::size_t i = 0; i < p.remote.size(); ++i) {
    d[i].free_bytes = gpu_of(pc.inv, p.remote[i]).vram_bytes;
    d[i].offloads_ops = true;
  }
  std::vector<const hw::gpu*> local;
  for (auto r : p.local) local.push_back(&gpu_of(pc.inv, r));
  auto gpus = gpu_devices(local);
  d.insert(d.end(), gpus.begin(), gpus.end());
  return d;
}

void evaluate(const planner_ctx& pc, const model_shape& m, placement& p) {
  auto argv = server_argv(pc, m, p);
  auto args = parse_server_args(argv);
  auto devs = devices_of(pc, p);
  auto est = args ? estimate_memory(m, *args, devs) : result<memory_estimate>(args.err());
  if (!est) {
    p.fits = false;
    p.why_not = est.err().message;
    return;
  }
  p.est = std::move(est).value();
  const auto all = devices_in_order(p);
  check_fit(pc, all, p);
  speed_placement sp;
  for (auto r : all) sp.gpus.push_back({r.node, r.gpu});
  sp.main_node = p.main_node;
  sp.row_split = p.row_split;
  sp.slots = p.slots;
  sp.ctx = p.ctx;
  auto si = speed_inputs(pc.inv, m, p.est, sp);
  p.speed = estimate_speed(si);
  p.speed.aggregate_decode_tps *= p.replicas;
  p.expert_layers_on_gpu = m.is_moe() ? static_cast<int>(m.n_layer) - p.est.expert_layers_on_host : 0;
}

int find_max_ctx(const planner_ctx& pc, const model_shape& m, placement p) {
  int lo = 0, hi = static_cast<int>(std::max<std::uint64_t>(256, m.n_ctx_train)) / 256;
  const int slots = std::max(1, p.slots);
  p.ctx = 256L * slots;
  evaluate(pc, m, p);
  if (!p.fits) return 0;
  while (lo < hi) {  // binary search on units of 256 tokens
    int mid = (lo + hi + 1) / 2;
    p.ctx = mid * 256L * slots;
    evaluate(pc, m, p);
    if (p.fits)
      lo = mid;
    else
      hi = mid - 1;
  }
  return std::max(256, lo * 256);
}

std::string fix_for(const planner_ctx& pc, const model_shape& m, const placement& p) {
  std::vector<std::string> fixes;
  std::uint64_t weights = 0;
  for (const auto& d : p.est.devices) weights += d.model_bytes;
  std::uint64_t kv = 0;
  for (const auto& d : p.est.devices) kv += d.context_bytes;
  const long per_agent = p.ctx / std::max(1, p.slots);
  if (p.max_ctx >= 256 && p.max_ctx < per_agent)
    fixes.push_back(fmt::format("a context of {} per agent (asked {} on average)", p.max_ctx, per_agent));
  if (kv > 0 && pc.opt.kv_type == "f16")
    fixes.push_back(fmt::format("q8_0 KV cache (-ctk q8_0 -ctv q8_0) saves {}", gib(kv / 2)));
  if (p.slots > 1) fixes.push_back(fmt::format("fewer agents ({} asked)", p.slots));
  std::uint64_t total_vram = 0;
  for (auto c : p.caps) total_vram += c;
  if (weights + weights / 10 >
      total_vram - std::min(total_vram, pc.opt.device_margin_bytes * p.caps.size())) {
    double ratio = static_cast<double>(total_vram) * 0.85 / std::max<double>(1, static_cast<double>(weights));
    fixes.push_back(fmt::format("a smaller quant (weights must shrink to {:.0f}% of {}, e.g. {})",
                                ratio * 100, gib(weights),
                                ratio > 0.6 ? "Q4_K_M from Q8_0, or IQ4_XS" : "a smaller model"));
    fixes.push_back(fmt::format("another GPU: about {} more VRAM",
                                gib(weights + weights / 5 - std::min(weights, total_vram))));
  }
  if (m.is_moe() && p.strategy != strategy::expert_offload)
    fixes.push_back("MoE expert offload to system RAM");
  std::string s;
  for (std::size_t i = 0; i < fixes.size(); ++i) s += (i ? "; " : "") + fixes[i];
  return s;
}

long copy_ctx(const demand& dm, int slots) {
  long share = dm.agents > 0 ? (dm.ctx_total * std::max(1, slots) + dm.agents - 1) / dm.agents : dm.ctx_total;
  share = std::max<long>(share, dm.ctx);
  return (share + 255) / 256 * 256;
}

placement finish_placement(const planner_ctx& pc, const model_shape& m, const demand& dm, placement p) {
  p.ctx = copy_ctx(dm, p.slots);
  if (p.strategy != strategy::expert_offload || !m.is_moe()) evaluate(pc, m, p);
  p.max_ctx = find_max_ctx(pc, m, p);
  p.ctx = copy_ctx(dm, p.slots);
  evaluate(pc, m, p);
  if (!p.fits) p.fix = fix_for(pc, m, p);
  return p;
}

const plan_model& model_by_name(const std::vector<plan_model>& models, const std::string& name) {
  for (const auto& m : models)
    if (m.name == name) return m;
  return models.front();
}

}  // namespace agifarm::plan::detail
