#include "plan/planner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "common/ot_rules.hpp"
#include "plan/devices.hpp"
#include "plan/speed_model.hpp"

namespace agifarm::plan {

namespace {

constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;

struct gpu_ref {
  int node = 0;
  int gpu = 0;
};

// The demand on one model: its roles merged (largest context, all agents).
struct demand {
  std::vector<std::string> roles;
  int ctx = 0;        // largest context a role asks per agent
  long ctx_total = 0; // sum over roles of ctx * agents: the unified KV pool
  int agents = 0;
  int priority = 0;
};

// One evaluated placement of a model.
struct placement {
  std::string strategy;
  std::string summary;
  int main_node = 0;
  std::vector<gpu_ref> local;   // GPUs of the main node, llama.cpp order after RPC devices
  std::vector<gpu_ref> remote;  // GPUs behind ggml-rpc-server on other nodes (listed first)
  std::vector<std::string> ot;  // -ot rules
  bool row_split = false;
  int replicas = 1;             // identical copies (replica strategy)
  int slots = 1;                // per copy
  long ctx = 0;                 // total KV pool of one copy (-c, unified over the slots)
  bool fits = false;
  std::string why_not, fix;
  memory_estimate est;
  std::vector<std::string> dev_names;
  std::vector<std::uint64_t> caps;
  std::uint64_t host_cap = 0;
  speed_estimate speed;
  int max_ctx = 0;
  int expert_layers_on_gpu = 0;
};

struct planner_ctx {
  const hw::inventory& inv;
  const plan_options& opt;
};

std::string gib(std::uint64_t b) { return fmt::format("{:.1f} GiB", static_cast<double>(b) / k_gib); }

const hw::gpu& gpu_of(const hw::inventory& inv, gpu_ref r) { return inv.nodes[r.node].gpus[r.gpu]; }

std::string rpc_endpoint(const hw::inventory& inv, gpu_ref r, const plan_options& opt) {
  return fmt::format("{}:{}", inv.nodes[r.node].address, opt.rpc_base_port + r.gpu);
}

std::vector<std::string> server_argv(const planner_ctx& pc, const model_shape& m, const placement& p) {
  std::vector<std::string> a{"-m", m.file, "-c", std::to_string(p.ctx), "-np", std::to_string(p.slots), "-ngl",
                             p.local.empty() && p.remote.empty() ? "0" : "999"};
  if (p.slots > 1) a.push_back("--kv-unified");
  if (pc.opt.kv_type != "f16") a.insert(a.end(), {"-ctk", pc.opt.kv_type, "-ctv", pc.opt.kv_type});
  std::vector<gpu_ref> all = p.remote;
  all.insert(all.end(), p.local.begin(), p.local.end());
  if (all.size() > 1) {
    std::string ts;
    for (std::size_t i = 0; i < all.size(); ++i)
      ts += fmt::format("{}{}", i ? "," : "", std::max<std::uint64_t>(1, gpu_of(pc.inv, all[i]).vram_bytes >> 30));
    a.insert(a.end(), {"-ts", ts});
  }
  if (p.row_split) a.insert(a.end(), {"-sm", "row"});
  if (!p.remote.empty()) {
    std::string rpc;
    for (std::size_t i = 0; i < p.remote.size(); ++i) rpc += (i ? "," : "") + rpc_endpoint(pc.inv, p.remote[i], pc.opt);
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
  std::vector<device_desc> d;
  std::vector<std::string> eps;
  for (auto r : p.remote) eps.push_back(rpc_endpoint(pc.inv, r, pc.opt));
  d = rpc_devices(eps);
  for (std::size_t i = 0; i < p.remote.size(); ++i) {
    d[i].free_bytes = gpu_of(pc.inv, p.remote[i]).vram_bytes;
    d[i].offloads_ops = true;
  }
  int cuda = 0;
  for (auto r : p.local) {
    const auto& g = gpu_of(pc.inv, r);
    device_desc x;
    x.name = fmt::format("{}{}", g.vendor == hw::gpu_vendor::amd ? "ROCm" : "CUDA", cuda++);
    x.buffer_names = {x.name};
    x.free_bytes = g.vram_bytes;
    x.offloads_ops = true;
    d.push_back(std::move(x));
  }
  return d;
}

compute_unit unit_of(const hw::gpu& g) {
  return {g.name, g.bandwidth_bytes_per_s > 0 ? g.bandwidth_bytes_per_s : 500e9,
          (g.fp16_tflops > 0 ? g.fp16_tflops : 30) * 1e12, false, g.generation};
}
compute_unit host_unit(const hw::node& n) {
  return {"host", n.ram_bandwidth_bytes_per_s > 0 ? n.ram_bandwidth_bytes_per_s : 40e9,
          n.cpu_peak_flops > 0 ? n.cpu_peak_flops : 5e11, true};
}

// Estimates memory and speed of `p` at p.ctx and checks it against the devices.
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
  p.dev_names.clear();
  p.caps.clear();
  std::vector<gpu_ref> all = p.remote;
  all.insert(all.end(), p.local.begin(), p.local.end());
  p.fits = true;
  p.why_not.clear();
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto& node = pc.inv.nodes[all[i].node];
    const auto& g = node.gpus[all[i].gpu];
    p.dev_names.push_back(fmt::format("{}/gpu{}", node.name, g.index));
    p.caps.push_back(g.vram_bytes);
    std::uint64_t limit = g.vram_bytes > pc.opt.device_margin_bytes ? g.vram_bytes - pc.opt.device_margin_bytes : 0;
    const auto& u = p.est.devices[i];
    if (u.total_bytes > limit && p.fits) {
      p.fits = false;
      p.why_not = fmt::format("{} ({} {}) needs {} (weights {} + KV {} + compute {}) but has {} with a {} margin",
                              p.dev_names.back(), g.name, gib(g.vram_bytes), gib(u.total_bytes), gib(u.model_bytes),
                              gib(u.context_bytes), gib(u.compute_bytes), gib(limit), gib(pc.opt.device_margin_bytes));
    }
  }
  const auto& main = pc.inv.nodes[p.main_node];
  p.host_cap = main.ram_bytes;
  std::uint64_t host_limit = main.ram_bytes > pc.opt.host_reserve_bytes ? main.ram_bytes - pc.opt.host_reserve_bytes : 0;
  if (main.ram_bytes > 0 && p.est.host.total_bytes > host_limit && p.fits) {
    p.fits = false;
    p.why_not = fmt::format("system RAM of {} needs {} (weights {}) but has {} after a {} reserve", main.name,
                            gib(p.est.host.total_bytes), gib(p.est.host.model_bytes), gib(host_limit),
                            gib(pc.opt.host_reserve_bytes));
  }
  // speed
  speed_input si;
  si.shape = &m;
  si.placement = &p.est;
  for (auto r : all) {
    si.devices.push_back(unit_of(gpu_of(pc.inv, r)));
    si.devices.back().remote = r.node != p.main_node;  // logits of an output layer there cross the network
  }
  si.host = host_unit(main);
  si.slots = p.slots;
  si.depth = std::min<double>(static_cast<double>(p.ctx) / std::max(1, p.slots) / 2.0, 4096);
  if (!all.empty()) {  // op offload to the first GPU over its PCIe link (0 when the inventory does not say)
    const auto& g0 = gpu_of(pc.inv, all[0]);
    si.offload_link_bytes_per_s = hw::gpu_pcie_link(pc.inv.nodes[all[0].node].name, g0).bandwidth_bytes_per_s;
  }
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {
    if (all[i].node != all[i + 1].node || all[i].node != p.main_node) {
      auto l = pc.inv.between(pc.inv.nodes[all[i].node].name, pc.inv.nodes[p.main_node].name);
      // RPC: network round trips and a fixed cost per graph split per token (speed_params)
      si.hops.push_back({l.bandwidth_bytes_per_s, l.latency_s, true});
    } else {
      auto l = pc.inv.between_gpus(main.name, gpu_of(pc.inv, all[i]).index, gpu_of(pc.inv, all[i + 1]).index);
      si.hops.push_back({l.bandwidth_bytes_per_s, l.latency_s});
    }
  }
  if (!p.remote.empty()) {  // the last remote device also returns to the main node
    auto l = pc.inv.between(pc.inv.nodes[p.remote.front().node].name, main.name);
    si.hops.push_back({l.bandwidth_bytes_per_s, l.latency_s, true});
  }
  if (p.row_split && all.size() > 1) {  // each layer's matrices on all GPUs at once; all-reduces per layer
    si.row_split = true;
    auto l = pc.inv.between_gpus(main.name, gpu_of(pc.inv, all[0]).index, gpu_of(pc.inv, all[1]).index);
    si.row_link = {l.bandwidth_bytes_per_s, l.latency_s};
  }
  p.speed = estimate_speed(si);
  p.speed.aggregate_decode_tps *= p.replicas;
  int depth_layers = 0;
  for (std::size_t i = 0; i < all.size(); ++i) depth_layers += p.est.layers_on_device[i];
  p.expert_layers_on_gpu = m.is_moe() ? static_cast<int>(m.n_layer) - p.est.expert_layers_on_host : 0;
  (void)depth_layers;
}

// Largest context per agent (multiple of 256, up to the training context) at which p still fits with
// every slot at that context.
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
    if (p.fits) lo = mid;
    else hi = mid - 1;
  }
  return std::max(256, lo * 256);
}

std::string fix_for(const planner_ctx& pc, const model_shape& m, const placement& p, std::uint64_t biggest_gpu) {
  std::vector<std::string> fixes;
  std::uint64_t weights = 0;
  for (const auto& d : p.est.devices) weights += d.model_bytes;
  std::uint64_t kv = 0;
  for (const auto& d : p.est.devices) kv += d.context_bytes;
  const long per_agent = p.ctx / std::max(1, p.slots);
  if (p.max_ctx >= 256 && p.max_ctx < per_agent)
    fixes.push_back(fmt::format("a context of {} per agent (asked {} on average)", p.max_ctx, per_agent));
  if (kv > 0 && pc.opt.kv_type == "f16") fixes.push_back(fmt::format("q8_0 KV cache (-ctk q8_0 -ctv q8_0) saves {}", gib(kv / 2)));
  if (p.slots > 1) fixes.push_back(fmt::format("fewer agents ({} asked)", p.slots));
  std::uint64_t total_vram = 0;
  for (auto c : p.caps) total_vram += c;
  if (weights + weights / 10 > total_vram - std::min(total_vram, pc.opt.device_margin_bytes * p.caps.size())) {
    double ratio = static_cast<double>(total_vram) * 0.85 / std::max<double>(1, static_cast<double>(weights));
    fixes.push_back(fmt::format("a smaller quant (weights must shrink to {:.0f}% of {}, e.g. {})", ratio * 100, gib(weights),
                                ratio > 0.6 ? "Q4_K_M from Q8_0, or IQ4_XS" : "a smaller model"));
    fixes.push_back(fmt::format("another GPU: about {} more VRAM", gib(weights + weights / 5 - std::min(weights, total_vram))));
  }
  if (m.is_moe() && p.strategy != "expert_offload") fixes.push_back("MoE expert offload to system RAM");
  (void)biggest_gpu;
  std::string s;
  for (std::size_t i = 0; i < fixes.size(); ++i) s += (i ? "; " : "") + fixes[i];
  return s;
}

// The -ot tensor pattern of the expert tensors of these layers: blk\.(3|7|12)\.ffn_(up|down|gate)_exps
// The pattern part of the one -ot rule (common/ot_rules: merged ranges, llama.cpp's expert suffix) that
// the deployment's backend_argv also writes, so `up` and `emit` run this exact rule.
std::string experts_of_layers(const std::set<int>& layers) {
  std::string rule = expert_offload_rule(std::vector<int>(layers.begin(), layers.end()), "CPU");
  return rule.substr(0, rule.rfind('='));
}

// Chooses layers whose experts move to RAM, biggest expert layers first, per overflowing device,
// until every device fits. Returns false when even all experts in RAM do not fit.
bool choose_expert_offload(const planner_ctx& pc, const model_shape& m, placement& p) {
  std::set<int> chosen;
  for (int iter = 0; iter < static_cast<int>(m.n_layer) + 2; ++iter) {
    p.ot.clear();
    if (!chosen.empty()) {
      p.ot.push_back(experts_of_layers(chosen) + "=CPU");
    }
    evaluate(pc, m, p);
    if (p.fits) return true;
    // which devices overflow, and by how much
    bool progress = false;
    std::vector<gpu_ref> all = p.remote;
    all.insert(all.end(), p.local.begin(), p.local.end());
    for (std::size_t i = 0; i < all.size(); ++i) {
      std::uint64_t limit = p.caps[i] > pc.opt.device_margin_bytes ? p.caps[i] - pc.opt.device_margin_bytes : 0;
      std::int64_t over = static_cast<std::int64_t>(p.est.devices[i].total_bytes) - static_cast<std::int64_t>(limit);
      if (over <= 0) continue;
      std::vector<std::pair<std::uint64_t, int>> layers;
      for (int l = 0; l < static_cast<int>(m.n_layer); ++l)
        if (p.est.layer_device[l] == static_cast<int>(i) && !chosen.count(l)) layers.push_back({m.layer_expert_bytes(l), -l});
      std::sort(layers.rbegin(), layers.rend());  // biggest first, lower layer index on ties
      for (auto [bytes, neg] : layers) {
        if (over <= 0 || bytes == 0) break;
        chosen.insert(-neg);
        over -= static_cast<std::int64_t>(bytes);
        progress = true;
      }
    }
    if (!progress) return false;
  }
  return false;
}

// The KV pool of one copy serving `slots` of the demand's agents: its share of sum(ctx * agents),
// at least the largest role context, rounded up to 256.
long copy_ctx(const demand& dm, int slots) {
  long share = dm.agents > 0 ? (dm.ctx_total * std::max(1, slots) + dm.agents - 1) / dm.agents : dm.ctx_total;
  share = std::max<long>(share, dm.ctx);
  return (share + 255) / 256 * 256;
}

doc_candidate to_candidate(const std::string& model, const demand& dm, const placement& p) {
  doc_candidate c;
  c.model = model;
  for (std::size_t i = 0; i < dm.roles.size(); ++i) c.role += (i ? "," : "") + dm.roles[i];
  c.strategy = p.strategy;
  c.summary = p.summary;
  c.feasible = p.fits;
  c.why_not = p.fits ? "" : p.why_not;
  c.fix = p.fits ? "" : p.fix;
  for (std::size_t i = 0; i < p.dev_names.size() && i < p.est.devices.size(); ++i) {
    auto d = p.est.devices[i];
    d.name = p.dev_names[i];
    c.devices.push_back(d);
    c.device_capacity_bytes.push_back(p.caps[i]);
  }
  auto h = p.est.host;
  h.name = "host";
  c.devices.push_back(h);
  c.device_capacity_bytes.push_back(p.host_cap);
  c.decode_tps = p.speed.decode_tps;
  c.prefill_tps = p.speed.prefill_tps;
  c.aggregate_decode_tps = p.speed.aggregate_decode_tps;
  c.max_ctx = p.max_ctx;
  c.agents = p.fits ? p.slots * p.replicas : 0;
  if (p.strategy == "replica") {
    c.pros = {"fastest per token: no inter-GPU traffic", "agents run in parallel on separate copies", "simple to run"};
    c.cons = {"each copy must fit one GPU: less context per copy", "no memory shared between copies"};
  } else if (p.strategy == "shard") {
    c.pros = {"fits models larger than one GPU", "long contexts: KV spread over all GPUs"};
    c.cons = {"layers run one GPU after the other: one copy's speed is bound by the sum of reads",
              "a PCIe hop per GPU boundary"};
    if (p.row_split) c.pros.push_back("row split over NVLink: GPUs read in parallel");
  } else if (p.strategy == "shard_rpc") {
    c.pros = {"the biggest models across machines", "uses every GPU of the farm"};
    c.cons = {"network round trips per token (RPC)", "every node must be up"};
  } else if (p.strategy == "expert_offload") {
    c.pros = {"a huge MoE on little VRAM", fmt::format("{} of {} expert layers stay on GPU", p.expert_layers_on_gpu, p.est.layer_device.size() - 1)};
    c.cons = {"decode bound by system RAM bandwidth for offloaded experts", "needs plenty of RAM"};
  }
  // ranking: speed for the agents, fewer moving parts better; infeasible last
  double simplicity = p.strategy == "replica" ? 1.0 : p.strategy == "expert_offload" ? 0.9 : p.strategy == "shard" ? 0.85 : 0.6;
  const double per_agent = static_cast<double>(p.ctx) / std::max(1, p.slots);
  double ctx_ok = p.max_ctx >= per_agent ? 1.0 : static_cast<double>(p.max_ctx) / std::max(1.0, per_agent);
  c.score = p.fits ? (c.decode_tps + 0.5 * c.aggregate_decode_tps) * simplicity * ctx_ok : 0;
  return c;
}

}  // namespace

result<offload_choice> choose_offload(const model_shape& m, const server_args& base, const std::vector<device_desc>& devices,
                                      std::uint64_t margin_bytes) {
  offload_choice out;
  std::set<int> chosen;
  for (int iter = 0; iter < static_cast<int>(m.n_layer) + 2; ++iter) {
    server_args a = base;
    out.ot_rule.clear();
    if (!chosen.empty()) {
      std::string pattern = experts_of_layers(chosen);
      out.ot_rule = pattern + "=CPU";
      a.overrides.insert(a.overrides.begin(), {pattern, "CPU"});
    }
    auto est = estimate_memory(m, a, devices);
    if (!est) return est.err();
    out.estimate = std::move(est).value();
    out.host_layers.assign(chosen.begin(), chosen.end());
    bool progress = false, fits = true;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      std::uint64_t limit = devices[i].free_bytes > margin_bytes ? devices[i].free_bytes - margin_bytes : 0;
      std::int64_t over = static_cast<std::int64_t>(out.estimate.devices[i].total_bytes) - static_cast<std::int64_t>(limit);
      if (over <= 0) continue;
      fits = false;
      std::vector<std::pair<std::uint64_t, int>> layers;
      for (int l = 0; l < static_cast<int>(m.n_layer); ++l)
        if (out.estimate.layer_device[l] == static_cast<int>(i) && !chosen.count(l)) layers.push_back({m.layer_expert_bytes(l), -l});
      std::sort(layers.rbegin(), layers.rend());
      for (auto [bytes, neg] : layers) {
        if (over <= 0 || bytes == 0) break;
        chosen.insert(-neg);
        over -= static_cast<std::int64_t>(bytes);
        progress = true;
      }
    }
    if (fits) {
      out.fits = true;
      return out;
    }
    if (!progress) return out;
  }
  return out;
}

std::vector<role_request> default_roles() {
  return {{"fast", "", 8192, 4}, {"code", "", 32768, 2}, {"think", "", 65536, 1}};
}

bool plan_fits(const plan_document& d) { return !d.chosen.backends.empty(); }

result<plan_document> make_plan(const hw::inventory& inv, const std::vector<plan_model>& models,
                                const std::vector<role_request>& roles_in, const plan_options& opt) {
  plan_document doc;
  planner_ctx pc{inv, opt};
  if (models.empty()) return make_error("no model to plan (give --model FILE.gguf)", 2);
  // inventory copy
  for (const auto& n : inv.nodes) {
    doc_node dn{n.name, n.address, {}, n.cpu_cores, n.ram_bytes, n.ram_bandwidth_bytes_per_s};
    for (const auto& g : n.gpus)
      dn.gpus.push_back({g.index, g.name, std::string(hw::to_string(g.vendor)), g.vram_bytes, g.bandwidth_bytes_per_s, g.fp16_tflops});
    doc.inventory.nodes.push_back(std::move(dn));
  }
  for (const auto& l : inv.links)
    doc.inventory.links.push_back({std::string(hw::to_string(l.kind)), l.node_a, l.node_b, l.gpus, l.bandwidth_bytes_per_s, l.latency_s});
  // models
  std::vector<std::size_t> by_size(models.size());
  std::iota(by_size.begin(), by_size.end(), 0);
  std::sort(by_size.begin(), by_size.end(), [&](auto a, auto b) { return models[a].shape.file_bytes < models[b].shape.file_bytes; });
  for (const auto& m : models) {
    doc_model dm;
    dm.name = m.name;
    dm.file = m.shape.file;
    dm.architecture = m.shape.architecture;
    dm.hf_repo = m.hf_repo;
    dm.n_params = m.shape.n_params;
    dm.file_bytes = m.shape.file_bytes;
    dm.n_layers = m.shape.n_layer;
    dm.n_experts = m.shape.n_expert;
    dm.known_architecture = m.shape.known_architecture;
    dm.quant = m.shape.quant;
    doc.models.push_back(dm);
    for (const auto& w : m.shape.warnings) doc.warnings.push_back(m.name + ": " + w);
  }
  // host figures that are defaults, not this node's own (never another machine's measurement)
  for (const auto& n : inv.nodes) {
    const std::string cpu = n.cpu_model.empty() ? "its CPU" : fmt::format("CPU '{}'", n.cpu_model);
    if (n.ram_bandwidth_source == "catalogue")
      doc.warnings.push_back(fmt::format("node {}: RAM bandwidth {:.1f} GB/s is a default ({} is not in data/cpus.yaml and "
                                         "ram_bandwidth_gbs is not declared): speeds with weights in RAM are rough",
                                         n.name, n.ram_bandwidth_bytes_per_s / 1e9, cpu));
    if (n.cpu_peak_flops <= 0)
      doc.warnings.push_back(fmt::format("node {}: CPU compute is a default of 500 GFLOP/s ({} is not in data/cpus.yaml "
                                         "and cpu.ghz is not declared): CPU prefill speeds are rough",
                                         n.name, cpu));
  }
  // roles
  std::vector<role_request> roles = roles_in.empty() ? default_roles() : roles_in;
  std::map<std::string, demand> demands;
  for (auto& r : roles) {
    auto defaults = default_roles();
    for (const auto& d : defaults)
      if (d.name == r.name) {
        if (r.ctx == 0) r.ctx = d.ctx;
        if (r.agents == 0) r.agents = d.agents;
      }
    if (r.ctx == 0) r.ctx = 8192;
    if (r.agents == 0) r.agents = 1;
    if (r.model.empty()) {
      std::size_t pick = r.name == "think" ? by_size.back() : r.name == "fast" ? by_size.front() : by_size[by_size.size() / 2];
      if (r.name == "code") pick = by_size.back();
      r.model = models[pick].name;
    }
    bool found = false;
    for (const auto& m : models) found = found || m.name == r.model;
    if (!found) {
      std::string names;
      for (const auto& m : models) names += (names.empty() ? "" : ", ") + m.name;
      return make_error(fmt::format("role '{}' names model '{}', which is not among the models ({})", r.name, r.model, names), 2);
    }
    auto& d = demands[r.model];
    d.roles.push_back(r.name);
    d.ctx = std::max(d.ctx, r.ctx);
    d.ctx_total += static_cast<long>(r.ctx) * r.agents;
    d.agents += r.agents;
    d.priority = std::max(d.priority, role_priority(r.name));
    doc.roles.push_back({r.name, r.model, r.ctx, r.agents});
  }

  std::vector<gpu_ref> all_gpus;
  for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
    for (int g = 0; g < static_cast<int>(inv.nodes[n].gpus.size()); ++g) all_gpus.push_back({n, g});
  std::uint64_t biggest = 0;
  for (auto r : all_gpus) biggest = std::max(biggest, gpu_of(inv, r).vram_bytes);

  // Per model: every strategy, the model having the farm to itself.
  std::map<std::string, std::vector<placement>> per_model;
  for (const auto& m : models) {
    auto it = demands.find(m.name);
    if (it == demands.end()) continue;
    const demand& dm = it->second;
    auto& out = per_model[m.name];
    auto finish = [&](placement p) {
      p.ctx = copy_ctx(dm, p.slots);
      if (p.strategy != "expert_offload" || !m.shape.is_moe()) evaluate(pc, m.shape, p);
      p.max_ctx = find_max_ctx(pc, m.shape, p);
      p.ctx = copy_ctx(dm, p.slots);
      evaluate(pc, m.shape, p);
      if (!p.fits) p.fix = fix_for(pc, m.shape, p, biggest);
      out.push_back(std::move(p));
    };
    // replica per GPU: one copy on each GPU that holds it; the agents spread over the copies
    if (!all_gpus.empty()) {
      // evaluate on the biggest GPU, count the GPUs that hold a copy
      gpu_ref best = all_gpus.front();
      for (auto r : all_gpus) if (gpu_of(inv, r).vram_bytes > gpu_of(inv, best).vram_bytes) best = r;
      placement p;
      p.strategy = "replica";
      p.main_node = best.node;
      p.local = {best};
      p.slots = dm.agents;
      p.ctx = copy_ctx(dm, p.slots);
      evaluate(pc, m.shape, p);
      int copies = 0;
      std::uint64_t need = p.est.devices.empty() ? 0 : p.est.devices[0].total_bytes;
      // with the agents spread, each copy needs fewer slots; count GPUs that fit one copy of one slot
      placement one = p;
      one.slots = 1;
      one.ctx = copy_ctx(dm, 1);
      evaluate(pc, m.shape, one);
      std::uint64_t need1 = one.est.devices.empty() ? 0 : one.est.devices[0].total_bytes;
      for (auto r : all_gpus) if (gpu_of(inv, r).vram_bytes >= need1 + opt.device_margin_bytes) ++copies;
      p.replicas = std::max(1, std::min(copies, dm.agents > 0 ? std::max(copies, 1) : 1));
      p.slots = std::max(1, (dm.agents + p.replicas - 1) / p.replicas);
      p.summary = fmt::format("{} cop{} (one per GPU), {} agent slot{} each", p.replicas, p.replicas == 1 ? "y" : "ies", p.slots, p.slots == 1 ? "" : "s");
      (void)need;
      finish(p);
    }
    // shard over the GPUs of the node with the most VRAM (>= 2 GPUs)
    int best_node = -1;
    for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
      if (inv.nodes[n].gpus.size() >= 2 && (best_node < 0 || inv.nodes[n].total_vram_bytes() > inv.nodes[best_node].total_vram_bytes()))
        best_node = n;
    if (best_node >= 0) {
      placement p;
      p.strategy = "shard";
      p.main_node = best_node;
      for (int g = 0; g < static_cast<int>(inv.nodes[best_node].gpus.size()); ++g) p.local.push_back({best_node, g});
      p.slots = dm.agents;
      p.summary = fmt::format("layer split over the {} GPUs of {}", p.local.size(), inv.nodes[best_node].name);
      finish(p);
      bool nvlink = false;
      for (const auto& l : inv.links) nvlink = nvlink || (l.kind == hw::link_kind::nvlink && l.node_a == inv.nodes[best_node].name);
      if (nvlink) {
        placement r = p;
        r.row_split = true;
        r.summary = fmt::format("row split over the {} NVLinked GPUs of {}", p.local.size(), inv.nodes[best_node].name);
        finish(r);
      }
    }
    // shard across nodes through RPC
    if (inv.nodes.size() >= 2 && all_gpus.size() >= 2) {
      placement p;
      p.strategy = "shard_rpc";
      int main = 0;
      for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
        if (inv.nodes[n].total_vram_bytes() > inv.nodes[main].total_vram_bytes()) main = n;
      p.main_node = main;
      for (auto r : all_gpus) (r.node == main ? p.local : p.remote).push_back(r);
      p.slots = dm.agents;
      p.summary = fmt::format("layer split over all {} GPUs of {} nodes: llama-server on {}, ggml-rpc-server on the others",
                              all_gpus.size(), inv.nodes.size(), inv.nodes[main].name);
      finish(p);
    }
    // MoE expert offload: the biggest GPU (and the best node's GPUs), experts of chosen layers in RAM
    if (m.shape.is_moe()) {
      gpu_ref best = all_gpus.empty() ? gpu_ref{0, 0} : all_gpus.front();
      for (auto r : all_gpus) if (gpu_of(inv, r).vram_bytes > gpu_of(inv, best).vram_bytes) best = r;
      std::vector<placement> variants;
      if (!all_gpus.empty()) {
        placement p;
        p.main_node = best.node;
        p.local = {best};
        variants.push_back(p);
      }
      if (best_node >= 0) {
        placement p;
        p.main_node = best_node;
        for (int g = 0; g < static_cast<int>(inv.nodes[best_node].gpus.size()); ++g) p.local.push_back({best_node, g});
        variants.push_back(p);
      }
      for (auto& p : variants) {
        p.strategy = "expert_offload";
        p.slots = dm.agents;
        p.ctx = copy_ctx(dm, p.slots);
        bool ok = choose_expert_offload(pc, m.shape, p);
        p.summary = fmt::format("{} GPU{}, experts of {} of {} layers in system RAM{}", p.local.size(),
                                p.local.size() == 1 ? "" : "s", p.est.expert_layers_on_host, m.shape.n_layer,
                                ok ? "" : " (not enough even with all experts in RAM)");
        if (ok && p.est.expert_layers_on_host == 0) continue;  // same as a plain shard / replica
        placement q = p;
        q.max_ctx = find_max_ctx(pc, m.shape, q);
        p.max_ctx = q.max_ctx;
        if (!p.fits) p.fix = fix_for(pc, m.shape, p, biggest);
        out.push_back(std::move(p));
      }
    }
    if (all_gpus.empty()) {
      placement p;
      p.strategy = "cpu";
      p.main_node = 0;
      p.slots = dm.agents;
      p.summary = "CPU only: the whole model in system RAM";
      finish(p);
    }
  }
  for (const auto& m : models) {
    if (!per_model.count(m.name)) continue;
    for (const auto& p : per_model[m.name]) doc.candidates.push_back(to_candidate(m.name, demands[m.name], p));
  }
  std::stable_sort(doc.candidates.begin(), doc.candidates.end(), [](const doc_candidate& a, const doc_candidate& b) {
    if (a.model != b.model) return a.model < b.model;
    return a.score > b.score;
  });

  // The deployment: one model -> its best candidate; several -> hybrid: biggest first on the fewest
  // GPUs that hold it, helpers on what is left, spare GPUs as extra replicas of the busiest model.
  struct chosen_t {
    std::string model;
    placement p;
  };
  std::vector<chosen_t> chosen;
  auto model_by_name = [&](const std::string& n) -> const plan_model& {
    for (const auto& m : models) if (m.name == n) return m;
    return models.front();
  };
  if (demands.size() == 1) {
    const auto& name = demands.begin()->first;
    const placement* best = nullptr;
    double best_score = 0;
    for (const auto& p : per_model[name]) {
      double s = to_candidate(name, demands[name], p).score;
      if (p.fits && (!best || s > best_score)) { best = &p; best_score = s; }
    }
    if (best) chosen.push_back({name, *best});
  } else {
    std::vector<bool> used(all_gpus.size(), false);
    std::vector<std::string> order;
    for (auto i = by_size.rbegin(); i != by_size.rend(); ++i) if (demands.count(models[*i].name)) order.push_back(models[*i].name);
    bool ok = true;
    for (const auto& name : order) {
      const auto& m = model_by_name(name);
      const demand& dm = demands[name];
      bool placed = false;
      auto take = [&](placement& p) {
        for (auto r : p.local)
          for (std::size_t i = 0; i < all_gpus.size(); ++i)
            if (all_gpus[i].node == r.node && all_gpus[i].gpu == r.gpu) used[i] = true;
        p.max_ctx = static_cast<int>(p.ctx / std::max(1, p.slots));
        chosen.push_back({name, p});
        placed = true;
      };
      auto free_on = [&](int n) {
        std::vector<gpu_ref> free;
        for (std::size_t i = 0; i < all_gpus.size(); ++i) if (!used[i] && all_gpus[i].node == n) free.push_back(all_gpus[i]);
        std::sort(free.begin(), free.end(), [&](gpu_ref a, gpu_ref b) { return gpu_of(inv, a).vram_bytes > gpu_of(inv, b).vram_bytes; });
        return free;
      };
      // 1) the fewest free GPUs of one node that hold the whole model
      for (std::size_t k = 1; k <= all_gpus.size() && !placed; ++k) {
        for (int n = 0; n < static_cast<int>(inv.nodes.size()) && !placed; ++n) {
          auto free = free_on(n);
          if (free.size() < k) continue;
          placement p;
          p.strategy = k == 1 ? "replica" : "shard";
          p.main_node = n;
          p.local.assign(free.begin(), free.begin() + static_cast<long>(k));
          p.slots = dm.agents;
          p.ctx = copy_ctx(dm, p.slots);
          evaluate(pc, m.shape, p);
          if (p.fits) take(p);
        }
      }
      // 2) MoE: all free GPUs of the node with the most free VRAM, experts of the biggest layers in RAM
      if (!placed && m.shape.is_moe()) {
        int bestn = -1;
        std::uint64_t best_free = 0;
        for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n) {
          std::uint64_t f = 0;
          for (auto r : free_on(n)) f += gpu_of(inv, r).vram_bytes;
          if (f > best_free) { best_free = f; bestn = n; }
        }
        if (bestn >= 0) {
          placement p;
          p.strategy = "expert_offload";
          p.main_node = bestn;
          p.local = free_on(bestn);
          p.slots = dm.agents;
          p.ctx = copy_ctx(dm, p.slots);
          if (choose_expert_offload(pc, m.shape, p)) take(p);
        }
      }
      // 3) system RAM of the node with the most RAM
      if (!placed) {
        int bestn = 0;
        for (int n = 0; n < static_cast<int>(inv.nodes.size()); ++n)
          if (inv.nodes[n].ram_bytes > inv.nodes[bestn].ram_bytes) bestn = n;
        placement p;
        p.strategy = "cpu";
        p.main_node = bestn;
        p.slots = dm.agents;
        p.ctx = copy_ctx(dm, p.slots);
        if (!inv.nodes.empty()) evaluate(pc, m.shape, p);
        if (p.fits) take(p);
      }
      if (!placed) {
        doc.warnings.push_back(fmt::format("{} does not fit anywhere left after the bigger models (GPUs, experts in RAM, "
                                           "or system RAM); it is not deployed", name));
      }
    }
    // spare GPUs: extra replicas of the model with the most agents per copy that fits one GPU
    if (ok) {
      for (std::size_t i = 0; i < all_gpus.size(); ++i) {
        if (used[i]) continue;
        for (auto& c : chosen) {
          if (c.p.local.size() != 1 || !c.p.remote.empty()) continue;
          placement q = c.p;
          q.local = {all_gpus[i]};
          q.main_node = all_gpus[i].node;
          q.ot.clear();
          evaluate(pc, model_by_name(c.model).shape, q);
          if (q.fits) {
            used[i] = true;
            c.p.replicas += 1;
            chosen.push_back({c.model, q});
            chosen.back().p.replicas = 0;  // marks an extra copy
            break;
          }
        }
      }
    }
    if (!chosen.empty()) {
      doc_candidate h;
      h.strategy = "hybrid";
      h.feasible = true;
      h.model = "*";
      std::map<std::string, int> copies;
      for (const auto& c : chosen) copies[c.model] += 1;
      for (const auto& [name, n] : copies) h.summary += fmt::format("{}{} x{}", h.summary.empty() ? "" : ", ", name, n);
      for (const auto& c : chosen) {
        for (std::size_t i = 0; i < c.p.dev_names.size(); ++i) {
          auto d = c.p.est.devices[i];
          d.name = c.p.dev_names[i] + " (" + c.model + ")";
          h.devices.push_back(d);
          h.device_capacity_bytes.push_back(c.p.caps[i]);
        }
        h.aggregate_decode_tps += c.p.speed.aggregate_decode_tps / std::max(1, c.p.replicas);
        h.agents += c.p.slots;
        h.decode_tps = std::max(h.decode_tps, c.p.speed.decode_tps);
        h.prefill_tps = std::max(h.prefill_tps, c.p.speed.prefill_tps);
      }
      h.max_ctx = 0;
      h.pros = {"every role served at once: a sharded core for deep work, helpers for fast agents",
                "each model on the fewest GPUs that hold it"};
      h.cons = {"more processes to run", "each model gets only part of the farm"};
      h.score = 1e9;  // the only candidate that serves all models at once
      doc.candidates.insert(doc.candidates.begin(), h);
    }
  }

  // Deployment from the chosen placements.
  if (!chosen.empty()) {
    std::map<std::string, int> counter;
    std::map<std::string, std::vector<std::string>> pool_backends;
    std::set<std::string> strategies;
    for (const auto& c : chosen) {
      const auto& m = model_by_name(c.model);
      int copies = c.p.strategy == "replica" && demands.size() == 1 ? std::max(1, c.p.replicas) : 1;
      std::vector<gpu_ref> copy_gpus;
      if (c.p.strategy == "replica" && demands.size() == 1) {
        // one copy per GPU that holds it (the evaluated copy is on the biggest GPU)
        for (auto r : all_gpus) {
          placement q = c.p;
          q.local = {r};
          q.main_node = r.node;
          evaluate(pc, m.shape, q);
          if (q.fits && static_cast<int>(copy_gpus.size()) < copies) copy_gpus.push_back(r);
        }
      }
      int n_copies = copy_gpus.empty() ? 1 : static_cast<int>(copy_gpus.size());
      for (int k = 0; k < n_copies; ++k) {
        placement q = c.p;
        if (!copy_gpus.empty()) {
          q.local = {copy_gpus[k]};
          q.main_node = copy_gpus[k].node;
        }
        q.replicas = 1;
        evaluate(pc, m.shape, q);
        strategies.insert(q.strategy);
        std::string bname = fmt::format("{}-{}", c.model, counter[c.model]++);
        std::vector<std::string> deps;
        for (auto r : q.remote) {
          backend_spec rs;
          rs.kind = backend_kind::rpc_server;
          rs.name = fmt::format("rpc-{}-gpu{}-{}", inv.nodes[r.node].name, gpu_of(inv, r).index, bname);
          rs.node = inv.nodes[r.node].name;
          rs.gpus = {gpu_of(inv, r).index};
          rs.host = inv.nodes[r.node].address;
          rs.port = opt.rpc_base_port + r.gpu;
          rs.env["CUDA_VISIBLE_DEVICES"] = std::to_string(gpu_of(inv, r).index);
          deps.push_back(rs.name);
          doc.chosen.backends.push_back(rs);
        }
        backend_spec b;
        b.name = bname;
        b.node = inv.nodes.empty() ? "local" : inv.nodes[q.main_node].name;
        b.model = c.model;
        b.model_file = m.shape.file;
        std::string vis;
        for (auto r : q.local) {
          b.gpus.push_back(gpu_of(inv, r).index);
          vis += (vis.empty() ? "" : ",") + std::to_string(gpu_of(inv, r).index);
        }
        if (!vis.empty()) b.env[!q.local.empty() && gpu_of(inv, q.local[0]).vendor == hw::gpu_vendor::amd ? "HIP_VISIBLE_DEVICES" : "CUDA_VISIBLE_DEVICES"] = vis;
        b.args = server_argv(pc, m.shape, q);
        b.slots = q.slots;
        b.ctx = static_cast<int>(q.ctx);
        b.depends_on = deps;
        backend_prediction pr;
        for (std::size_t i = 0; i < q.dev_names.size() && i < q.est.devices.size(); ++i) {
          auto d = q.est.devices[i];
          d.name = q.dev_names[i];
          pr.devices.push_back(d);
        }
        pr.host = q.est.host;
        pr.decode_tps = q.speed.decode_tps;
        pr.prefill_tps = q.speed.prefill_tps;
        pr.aggregate_decode_tps = q.speed.aggregate_decode_tps;
        b.predicted = pr;
        doc.chosen.backends.push_back(b);
        pool_backends[c.model].push_back(bname);
      }
    }
    for (const auto& [name, bs] : pool_backends) {
      pool_spec ps;
      ps.name = name;
      ps.aliases = demands[name].roles;
      ps.backends = bs;
      ps.balance = demands[name].agents > 1 ? balance_policy::prefix_affinity : balance_policy::least_outstanding;
      ps.priority = demands[name].priority;
      doc.chosen.pools.push_back(ps);
    }
    doc.chosen.strategy = demands.size() > 1 ? "hybrid" : *strategies.begin();
    // recommendation
    int idx = -1;
    for (std::size_t i = 0; i < doc.candidates.size(); ++i)
      if (doc.candidates[i].feasible && doc.candidates[i].strategy == doc.chosen.strategy &&
          (demands.size() > 1 || doc.candidates[i].model == chosen.front().model)) {
        idx = static_cast<int>(i);
        break;
      }
    doc.recommendation.strategy = doc.chosen.strategy;
    doc.recommendation.candidate = idx;
    if (idx >= 0) {
      const auto& c = doc.candidates[idx];
      if (demands.size() > 1) {
        doc.recommendation.reasons.push_back(fmt::format("{} of {} models deployed for {} roles at once: {}", pool_backends.size(), demands.size(), roles.size(), c.summary));
        doc.recommendation.reasons.push_back("each model sits on the fewest GPUs that hold it at its context; spare GPUs add replicas");
      } else {
        doc.recommendation.reasons.push_back(fmt::format("{}: {:.0f} tok/s per agent, {:.0f} tok/s with all {} agents busy", c.summary,
                                                         c.decode_tps, c.aggregate_decode_tps, c.agents));
        doc.recommendation.reasons.push_back(fmt::format("context up to {} tokens per agent with all agents at it; asked up to {} (one shared KV pool of {} tokens per copy)",
                                                         c.max_ctx, demands.begin()->second.ctx, chosen.front().p.ctx));
        if (c.strategy == "replica") doc.recommendation.reasons.push_back("the model fits one GPU: copies avoid inter-GPU traffic");
        if (c.strategy == "expert_offload") doc.recommendation.reasons.push_back("the model does not fit the GPUs whole; experts of the biggest layers go to RAM");
        if (c.strategy == "shard" || c.strategy == "shard_rpc") doc.recommendation.reasons.push_back("the model needs the memory of several GPUs");
        // runner-up: the best feasible candidate of another strategy; the score is linear in the
        // predicted tokens/s, so score ratio - 1 is the speed it would have to gain to win
        int ru = -1;
        for (std::size_t i = 0; i < doc.candidates.size(); ++i) {
          const auto& o = doc.candidates[i];
          if (!o.feasible || o.score <= 0 || o.strategy == c.strategy || o.model != c.model) continue;
          if (ru < 0 || o.score > doc.candidates[ru].score) ru = static_cast<int>(i);
        }
        if (ru >= 0) {
          const auto& o = doc.candidates[ru];
          const double gain = c.score / o.score - 1.0;
          doc.recommendation.runner_up = o.strategy;
          doc.recommendation.runner_up_candidate = ru;
          doc.recommendation.runner_up_gain = gain;
          if (gain <= 0)
            doc.recommendation.reasons.push_back(fmt::format("runner-up: {} ranks as high ({})", o.strategy, o.summary));
          else
            doc.recommendation.reasons.push_back(fmt::format(
                "runner-up: {}, would need {:+.0f} % decode tok/s to win{}", o.strategy, 100 * gain,
                gain < 0.2 ? " (within the speed model's ±20 % decode error: measure both)" : ""));
        }
      }
    }
  } else {
    doc.recommendation.strategy = "";
    doc.recommendation.reasons.push_back("nothing fits: see why_not and fix of each candidate");
  }
  return doc;
}

std::string format_plan(const plan_document& d) {
  std::string out;
  auto bar = [](std::uint64_t used, std::uint64_t cap) {
    int w = 20;
    int n = cap ? static_cast<int>(std::min<double>(w, std::round(w * static_cast<double>(used) / static_cast<double>(cap)))) : 0;
    std::string s(1, '[');  // appended piecewise: "[" + std::string(...) trips GCC 12's -Wrestrict
    s.append(static_cast<std::size_t>(n), '#');
    s.append(static_cast<std::size_t>(w - n), '.');
    s += ']';
    if (cap && used > cap) s += "!";
    return s;
  };
  out += "roles:";
  for (const auto& r : d.roles) out += fmt::format("  {}={} (ctx {}, {} agent{})", r.name, r.model, r.ctx, r.agents, r.agents == 1 ? "" : "s");
  out += "\n\n";
  int rank = 0;
  std::string last_model;
  for (const auto& c : d.candidates) {
    if (c.model != last_model) {
      out += fmt::format("== {} ==\n", c.model == "*" ? "all models together" : c.model);
      last_model = c.model;
      rank = 0;
    }
    ++rank;
    out += fmt::format("{}. {:<15} {}\n", rank, c.strategy, c.summary);
    if (c.feasible) {
      out += fmt::format("   decode {:.1f} tok/s single, {:.1f} aggregate; prefill {:.0f} tok/s; max ctx {}; agents {}\n", c.decode_tps,
                         c.aggregate_decode_tps, c.prefill_tps, c.max_ctx, c.agents);
    } else {
      out += fmt::format("   does not fit: {}\n", c.why_not);
      if (!c.fix.empty()) out += fmt::format("   would fit with: {}\n", c.fix);
    }
    for (std::size_t i = 0; i < c.devices.size(); ++i) {
      const auto& m = c.devices[i];
      std::uint64_t cap = i < c.device_capacity_bytes.size() ? c.device_capacity_bytes[i] : 0;
      out += fmt::format("   {:<28} {} {:6.1f}/{:6.1f} GiB (w {:.1f} kv {:.1f} c {:.1f})\n", m.name, bar(m.total_bytes, cap),
                         m.total_bytes / k_gib, cap / k_gib, m.model_bytes / k_gib, m.context_bytes / k_gib, m.compute_bytes / k_gib);
    }
    if (!c.pros.empty()) {
      out += "   + ";
      for (std::size_t i = 0; i < c.pros.size(); ++i) out += (i ? "; " : "") + c.pros[i];
      out += "\n";
    }
    if (!c.cons.empty()) {
      out += "   - ";
      for (std::size_t i = 0; i < c.cons.size(); ++i) out += (i ? "; " : "") + c.cons[i];
      out += "\n";
    }
  }
  out += "\n";
  if (!d.recommendation.strategy.empty()) {
    out += fmt::format("recommendation: {}\n", d.recommendation.strategy);
    for (const auto& r : d.recommendation.reasons) out += "  - " + r + "\n";
    out += "backends:\n";
    for (const auto& b : d.chosen.backends) {
      out += fmt::format("  {} on {}: {}", b.name, b.node, to_string(b.kind));
      for (const auto& a : b.args) out += " " + a;
      out += "\n";
    }
  } else {
    out += "no feasible plan:\n";
    for (const auto& r : d.recommendation.reasons) out += "  - " + r + "\n";
  }
  for (const auto& w : d.warnings) out += "warning: " + w + "\n";
  for (const auto& n : d.notes) out += "note: " + n + "\n";
  return out;
}

}  // namespace agifarm::plan
