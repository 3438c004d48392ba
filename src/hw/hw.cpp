// Plain hardware types: link lookups, JSON and the human table.
#include "hw/hw.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>

namespace agifarm::hw {

std::string_view to_string(gpu_vendor v) {
  switch (v) {
    case gpu_vendor::nvidia:
      return "nvidia";
    case gpu_vendor::amd:
      return "amd";
    case gpu_vendor::none:
      break;
  }
  return "none";
}

std::string_view to_string(link_kind k) {
  switch (k) {
    case link_kind::pcie:
      return "pcie";
    case link_kind::nvlink:
      return "nvlink";
    case link_kind::ethernet:
      break;
  }
  return "ethernet";
}

link gpu_pcie_link(const std::string& node_name, const gpu& g) {
  link l;
  l.kind = link_kind::pcie;
  l.node_a = l.node_b = node_name;
  l.gpus = {g.index};
  l.pcie_gen = g.pcie_gen;
  l.pcie_lanes = g.pcie_lanes;
  l.bandwidth_bytes_per_s = pcie_bandwidth_bytes_per_s(g.pcie_gen, g.pcie_lanes);
  l.latency_s = k_default_pcie_latency_s;
  return l;
}

double pcie_bandwidth_bytes_per_s(int gen, int lanes) {
  // Per lane, one direction, after 8b/10b (gen 1-2) or 128b/130b (gen 3+) coding; gen 6 (PAM4, FLIT)
  // is counted as twice gen 5.
  static constexpr double k_per_lane[] = {0, 0.25e9, 0.5e9, 0.985e9, 1.969e9, 3.938e9, 7.877e9, 15.754e9};
  if (gen < 1 || gen > 7 || lanes < 1) return 0;
  return k_per_lane[gen] * lanes;
}

std::uint64_t node::total_vram_bytes() const {
  std::uint64_t t = 0;
  for (const auto& g : gpus) t += g.vram_bytes;
  return t;
}

inventory::inventory() {
  default_link.kind = link_kind::ethernet;
  default_link.bandwidth_bytes_per_s = k_default_ethernet_gbit * 1e9 / 8;
  default_link.latency_s = k_default_ethernet_latency_s;
}

const node* inventory::find_node(std::string_view name) const {
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

int inventory::gpu_count() const {
  int c = 0;
  for (const auto& n : nodes) c += static_cast<int>(n.gpus.size());
  return c;
}

link inventory::between(std::string_view a, std::string_view b) const {
  if (a == b) {
    link l;
    l.kind = link_kind::ethernet;
    l.node_a = l.node_b = std::string(a);
    l.bandwidth_bytes_per_s = k_loopback_bandwidth_bytes_per_s;
    l.latency_s = 20e-6;
    return l;
  }
  for (const auto& l : links)
    if (l.kind == link_kind::ethernet &&
        ((l.node_a == a && l.node_b == b) || (l.node_a == b && l.node_b == a)))
      return l;
  link l = default_link;
  l.node_a = std::string(a);
  l.node_b = std::string(b);
  return l;
}

link inventory::between_gpus(std::string_view node_name, int gpu_a, int gpu_b) const {
  for (const auto& l : links) {
    if (l.kind != link_kind::nvlink || l.node_a != node_name) continue;
    bool has_a = std::find(l.gpus.begin(), l.gpus.end(), gpu_a) != l.gpus.end();
    bool has_b = std::find(l.gpus.begin(), l.gpus.end(), gpu_b) != l.gpus.end();
    if (has_a && has_b) return l;
  }
  link l;
  l.kind = link_kind::pcie;
  l.node_a = l.node_b = std::string(node_name);
  l.gpus = {gpu_a, gpu_b};
  l.latency_s = k_default_pcie_latency_s;
  l.pcie_gen = 4;
  l.pcie_lanes = 16;
  const node* n = find_node(node_name);
  auto in_range = [&](int i) { return n && i >= 0 && i < static_cast<int>(n->gpus.size()); };
  if (in_range(gpu_a) && in_range(gpu_b)) {
    const gpu& x = n->gpus[static_cast<std::size_t>(gpu_a)];
    const gpu& y = n->gpus[static_cast<std::size_t>(gpu_b)];
    double bx = pcie_bandwidth_bytes_per_s(x.pcie_gen, x.pcie_lanes);
    double by = pcie_bandwidth_bytes_per_s(y.pcie_gen, y.pcie_lanes);
    const gpu& slow = (bx > 0 && (by <= 0 || bx <= by)) ? x : y;
    if (pcie_bandwidth_bytes_per_s(slow.pcie_gen, slow.pcie_lanes) > 0) {
      l.pcie_gen = slow.pcie_gen;
      l.pcie_lanes = slow.pcie_lanes;
    }
  }
  l.bandwidth_bytes_per_s = pcie_bandwidth_bytes_per_s(l.pcie_gen, l.pcie_lanes);
  return l;
}

boost::json::object to_json(const gpu& g) {
  boost::json::object o;
  o["index"] = g.index;
  o["name"] = g.name;
  o["catalogue_id"] = g.catalogue_id;
  o["vendor"] = std::string(to_string(g.vendor));
  o["vram_bytes"] = g.vram_bytes;
  o["free_vram_bytes"] = g.free_vram_bytes;
  o["bandwidth_bytes_per_s"] = g.bandwidth_bytes_per_s;
  o["fp16_tflops"] = g.fp16_tflops;
  o["pcie_gen"] = g.pcie_gen;
  o["pcie_lanes"] = g.pcie_lanes;
  return o;
}

boost::json::object to_json(const node& n) {
  boost::json::object o;
  o["name"] = n.name;
  o["address"] = n.address;
  // How the farm reaches the node: only what the inventory declared.
  if (!n.ssh.empty()) o["ssh"] = n.ssh;
  if (!n.agifarm_path.empty()) o["agifarm"] = n.agifarm_path;
  if (!n.llama_bin.empty()) o["llama_bin"] = n.llama_bin;
  if (!n.state_dir.empty()) o["state_dir"] = n.state_dir;
  o["cpu_model"] = n.cpu_model;
  o["cpu_cores"] = n.cpu_cores;
  o["cpu_threads"] = n.cpu_threads;
  o["cpu_peak_flops"] = n.cpu_peak_flops;
  o["cpu_flops_source"] = n.cpu_flops_source;
  o["ram_bytes"] = n.ram_bytes;
  o["ram_free_bytes"] = n.ram_free_bytes;
  o["ram_bandwidth_bytes_per_s"] = n.ram_bandwidth_bytes_per_s;
  o["ram_bandwidth_source"] = n.ram_bandwidth_source;
  boost::json::array gs;
  for (const auto& g : n.gpus) gs.push_back(to_json(g));
  o["gpus"] = std::move(gs);
  o["total_vram_bytes"] = n.total_vram_bytes();
  return o;
}

boost::json::object to_json(const link& l) {
  boost::json::object o;
  o["kind"] = std::string(to_string(l.kind));
  o["node_a"] = l.node_a;
  o["node_b"] = l.node_b;
  boost::json::array gs;
  for (int g : l.gpus) gs.push_back(g);
  o["gpus"] = std::move(gs);
  o["bandwidth_bytes_per_s"] = l.bandwidth_bytes_per_s;
  o["latency_s"] = l.latency_s;
  if (l.kind == link_kind::pcie) {
    o["pcie_gen"] = l.pcie_gen;
    o["pcie_lanes"] = l.pcie_lanes;
  }
  return o;
}

boost::json::object to_json(const inventory& inv) {
  boost::json::object o;
  o["source"] = inv.source;
  boost::json::array ns, ls;
  for (const auto& n : inv.nodes) ns.push_back(to_json(n));
  for (const auto& l : inv.links) ls.push_back(to_json(l));
  o["nodes"] = std::move(ns);
  o["links"] = std::move(ls);
  o["default_link"] = to_json(inv.default_link);
  o["gpu_count"] = inv.gpu_count();
  return o;
}

namespace {
std::string gib(std::uint64_t b) {
  return fmt::format("{:.1f} GiB", static_cast<double>(b) / (1024.0 * 1024 * 1024));
}
std::string gbs(double b) { return b > 0 ? fmt::format("{:.0f} GB/s", b / 1e9) : std::string("?"); }
}  // namespace

std::string format_table(const inventory& inv) {
  std::string out;
  for (const auto& n : inv.nodes) {
    out += fmt::format("node {} ({})\n", n.name, n.address);
    if (!n.ssh.empty()) out += fmt::format("  ssh   {}\n", n.ssh);
    out += fmt::format(
        "  cpu   {} — {} cores / {} threads{}\n", n.cpu_model.empty() ? "?" : n.cpu_model, n.cpu_cores,
        n.cpu_threads,
        n.cpu_peak_flops > 0 ? fmt::format(", ~{:.0f} GFLOP/s FP32 peak", n.cpu_peak_flops / 1e9) : "");
    out += fmt::format("  ram   {} total, {} free, {} ({})\n", gib(n.ram_bytes), gib(n.ram_free_bytes),
                       gbs(n.ram_bandwidth_bytes_per_s),
                       n.ram_bandwidth_source.empty() ? "?" : n.ram_bandwidth_source);
    if (n.gpus.empty()) {
      out += "  gpus  none — CPU only (models run from system RAM)\n";
      continue;
    }
    out += fmt::format("  {:>3}  {:<34} {:<12} {:>10} {:>10} {:>10} {:>9} {:>8}\n", "gpu", "name",
                       "catalogue", "vram", "free", "bandwidth", "fp16", "pcie");
    for (const auto& g : n.gpus) {
      out += fmt::format("  {:>3}  {:<34} {:<12} {:>10} {:>10} {:>10} {:>9} {:>8}\n", g.index,
                         g.name.substr(0, 34), g.catalogue_id.empty() ? "-" : g.catalogue_id,
                         gib(g.vram_bytes), gib(g.free_vram_bytes), gbs(g.bandwidth_bytes_per_s),
                         g.fp16_tflops > 0 ? fmt::format("{:.0f} TF", g.fp16_tflops) : "?",
                         g.pcie_gen ? fmt::format("g{} x{}", g.pcie_gen, g.pcie_lanes) : "?");
    }
    out += fmt::format("  total VRAM {}\n", gib(n.total_vram_bytes()));
  }
  bool any = false;
  for (const auto& l : inv.links) {
    if (l.kind == link_kind::pcie) continue;
    if (!any) out += "links\n";
    any = true;
    if (l.kind == link_kind::ethernet)
      out += fmt::format("  ethernet {} <-> {}: {:g} Gbit/s, {:g} ms\n", l.node_a, l.node_b, l.gbit_per_s(),
                         l.latency_s * 1e3);
    else {
      std::string gs;
      for (int g : l.gpus) {
        if (!gs.empty()) gs += ',';
        gs += std::to_string(g);
      }
      out +=
          fmt::format("  nvlink on {} gpus {}: {:.1f} GB/s\n", l.node_a, gs, l.bandwidth_bytes_per_s / 1e9);
    }
  }
  if (inv.nodes.size() > 1)
    out += fmt::format("  other node pairs: ethernet {:g} Gbit/s, {:g} ms (default)\n",
                       inv.default_link.gbit_per_s(), inv.default_link.latency_s * 1e3);
  return out;
}

}  // namespace agifarm::hw
