// The inventory file: a farm's machines, their GPUs and links, as YAML. Format in docs/hardware.md.
#include <algorithm>
#include <set>

#include "hw/hw.hpp"
#include "hw/names.hpp"
#include "hw/yaml_util.hpp"
#include "remote/remote.hpp"

namespace agifarm::hw {

using detail::is_scalar;
using detail::is_seq;
using detail::yaml_error;
using detail::yaml_reader;

namespace {

constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;
constexpr int k_max_nodes = 4096;
constexpr int k_max_gpus_per_node = 256;

std::uint64_t gib_bytes(double g) { return static_cast<std::uint64_t>(g * k_gib); }

bool valid_node_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; });
}

// A path on the node (`agifarm`, `llama_bin`, `state_dir`): any non-empty text on one line.
std::string read_path(const yaml_reader& r, const YAML::Node& map, std::string_view key) {
  std::string v = r.str(map, key);
  if (v.empty()) r.fail(map[std::string(key)], key, "is empty (leave the key out for the default)");
  if (std::any_of(v.begin(), v.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    r.fail(map[std::string(key)], key, "has a control character");
  return v;
}

struct pcie_spec {
  int gen = 0;
  int lanes = 0;
};

pcie_spec read_pcie(const yaml_reader& r, const YAML::Node& n) {
  r.check_keys(n, "pcie", {"gen", "lanes"});
  pcie_spec p;
  p.gen = r.integer(n, "gen", 1, 7);
  p.lanes = r.has(n, "lanes") ? r.integer(n, "lanes", 1, 32) : 16;
  if (p.lanes != 1 && p.lanes != 2 && p.lanes != 4 && p.lanes != 8 && p.lanes != 16 && p.lanes != 32)
    r.fail(n["lanes"], "lanes", fmt::format("{} is not a PCIe width (1, 2, 4, 8, 16)", p.lanes));
  return p;
}

gpu_vendor read_vendor(const yaml_reader& r, const YAML::Node& map) {
  std::string v = r.str(map, "vendor");
  if (v == "nvidia") return gpu_vendor::nvidia;
  if (v == "amd") return gpu_vendor::amd;
  r.fail(map["vendor"], "vendor", fmt::format("'{}' is not a GPU vendor (nvidia, amd)", v));
}

void read_gpus(const yaml_reader& r, const YAML::Node& list, const catalogue& cat, const pcie_spec& node_pcie,
               node& out) {
  if (!is_seq(list)) r.fail(list, "gpus", "must be a list of GPU entries");
  for (const auto& e : list) {
    r.check_keys(
        e, "a GPU entry",
        {"model", "count", "name", "vendor", "vram_gb", "free_vram_gb", "bandwidth_gbs", "tflops", "pcie"});
    gpu g;
    g.vendor = gpu_vendor::nvidia;
    const gpu_spec* spec = nullptr;
    if (r.has(e, "model")) {
      std::string model = r.str(e, "model");
      spec = cat.find(model);
      if (!spec) {
        std::string near;
        for (const auto& s : cat.nearest(model, 3)) {
          if (!near.empty()) near += ", ";
          near += s;
        }
        r.fail(e["model"], "model",
               fmt::format(
                   "unknown GPU '{}'; nearest in the catalogue ({}): {} — or give vram_gb, bandwidth_gbs and "
                   "tflops instead of model",
                   model, cat.source.empty() ? "gpus.yaml" : cat.source, near));
      }
      g.name = spec->display_name;
      g.catalogue_id = spec->id;
      g.vendor = spec->vendor;
      g.vram_bytes = spec->vram_bytes;
      g.bandwidth_bytes_per_s = spec->bandwidth_bytes_per_s;
      g.fp16_tflops = spec->fp16_tflops;
      g.generation = spec->generation;
      g.pcie_gen = spec->pcie_gen;
      g.pcie_lanes = spec->pcie_lanes;
    } else {
      for (const char* k : {"vram_gb", "bandwidth_gbs", "tflops"})
        if (!r.has(e, k))
          r.fail(e, k, "missing: a GPU without 'model' needs vram_gb, bandwidth_gbs and tflops");
      g.name = "custom GPU";
      g.pcie_gen = 4;
      g.pcie_lanes = 16;
    }
    if (r.has(e, "name")) g.name = r.str(e, "name");
    if (r.has(e, "vendor")) g.vendor = read_vendor(r, e);
    if (r.has(e, "vram_gb")) g.vram_bytes = gib_bytes(r.number(e, "vram_gb", 0.125, 1 << 20));
    if (r.has(e, "bandwidth_gbs")) g.bandwidth_bytes_per_s = r.number(e, "bandwidth_gbs", 1, 1e6) * 1e9;
    if (r.has(e, "tflops")) g.fp16_tflops = r.number(e, "tflops", 0.01, 1e6);
    g.free_vram_bytes = g.vram_bytes;
    if (r.has(e, "free_vram_gb")) {
      g.free_vram_bytes = gib_bytes(r.number(e, "free_vram_gb", 0, 1 << 20));
      if (g.free_vram_bytes > g.vram_bytes) r.fail(e["free_vram_gb"], "free_vram_gb", "is more than vram_gb");
    }
    if (node_pcie.gen) {
      g.pcie_gen = node_pcie.gen;
      g.pcie_lanes = node_pcie.lanes;
    }
    if (r.has(e, "pcie")) {
      pcie_spec p = read_pcie(r, e["pcie"]);
      g.pcie_gen = p.gen;
      g.pcie_lanes = p.lanes;
    }
    int count = r.has(e, "count") ? r.integer(e, "count", 1, k_max_gpus_per_node) : 1;
    if (static_cast<int>(out.gpus.size()) + count > k_max_gpus_per_node)
      r.fail(e, "count",
             fmt::format("node '{}' would have more than {} GPUs", out.name, k_max_gpus_per_node));
    for (int i = 0; i < count; ++i) {
      g.index = static_cast<int>(out.gpus.size());
      out.gpus.push_back(g);
    }
  }
}

void read_nvlinks(const yaml_reader& r, const YAML::Node& list, const node& n, std::vector<link>& links) {
  if (!is_seq(list)) r.fail(list, "nvlink", "must be a list of {gpus: [i, j, ...], bandwidth_gbs: N}");
  for (const auto& e : list) {
    r.check_keys(e, "an nvlink entry", {"gpus", "bandwidth_gbs", "latency_us"});
    YAML::Node gs = e["gpus"];
    if (!is_seq(gs))
      r.fail(gs.IsDefined() ? gs : YAML::Node(e), "gpus", "must be a list of GPU indices of this node");
    link l;
    l.kind = link_kind::nvlink;
    l.node_a = l.node_b = n.name;
    std::set<int> seen;
    for (const auto& gi : gs) {
      int idx = 0;
      if (!is_scalar(gi)) r.fail(gi, "gpus", "must be a list of GPU indices");
      try {
        idx = gi.as<int>();
      } catch (const YAML::Exception&) {
        r.fail(gi, "gpus", fmt::format("'{}' is not a GPU index", gi.Scalar()));
      }
      if (idx < 0 || idx >= static_cast<int>(n.gpus.size()))
        r.fail(gi, "gpus",
               fmt::format("GPU {} does not exist on node '{}' (it has {})", idx, n.name, n.gpus.size()));
      if (!seen.insert(idx).second) r.fail(gi, "gpus", fmt::format("GPU {} is listed twice", idx));
      l.gpus.push_back(idx);
    }
    if (l.gpus.size() < 2) r.fail(gs, "gpus", "an NVLink joins at least two GPUs");
    l.bandwidth_bytes_per_s = r.number(e, "bandwidth_gbs", 1, 1e5) * 1e9;
    l.latency_s =
        r.has(e, "latency_us") ? r.number(e, "latency_us", 0, 1e6) * 1e-6 : k_default_nvlink_latency_s;
    links.push_back(std::move(l));
  }
}

link read_ethernet(const yaml_reader& r, const YAML::Node& e, double default_latency_s) {
  link l;
  l.kind = link_kind::ethernet;
  l.bandwidth_bytes_per_s = r.number(e, "ethernet_gbits", 0.001, 1e5) * 1e9 / 8;
  l.latency_s = r.has(e, "latency_ms") ? r.number(e, "latency_ms", 0, 1e4) * 1e-3 : default_latency_s;
  return l;
}

inventory parse(std::string_view text, std::string_view file, const catalogue& cat) {
  yaml_reader r(file);
  const YAML::Node root = detail::load_yaml(text, file);
  if (!root.IsDefined() || root.IsNull())
    throw yaml_error{fmt::format("{}: the inventory is empty (expected 'nodes:')", file)};
  r.check_keys(root, "the inventory", {"nodes", "links", "default_link"});
  inventory inv;
  inv.source = std::string(file);
  if (r.has(root, "default_link")) {
    YAML::Node d = root["default_link"];
    r.check_keys(d, "default_link", {"ethernet_gbits", "latency_ms"});
    inv.default_link = read_ethernet(r, d, k_default_ethernet_latency_s);
  }
  YAML::Node nodes = root["nodes"];
  if (!is_seq(nodes) || nodes.size() == 0)
    r.fail(nodes.IsDefined() ? nodes : root, "nodes", "must be a non-empty list of machines");
  if (nodes.size() > k_max_nodes) r.fail(nodes, "nodes", fmt::format("more than {} nodes", k_max_nodes));
  std::vector<link> nvlinks;
  for (const auto& e : nodes) {
    r.check_keys(e, "a node",
                 {"name", "address", "ssh", "agifarm", "llama_bin", "state_dir", "cpu", "ram_gb",
                  "ram_free_gb", "ram_bandwidth_gbs", "pcie", "gpus", "nvlink"});
    node n;
    n.name = r.str(e, "name");
    if (!valid_node_name(n.name))
      r.fail(e["name"], "name",
             fmt::format("'{}' is not a node name (letters, digits, '-', '_', '.')", n.name));
    if (inv.find_node(n.name)) r.fail(e["name"], "name", fmt::format("node '{}' is defined twice", n.name));
    // A node reached over ssh listens on the ssh host unless `address` says otherwise (a private
    // network); a node without ssh keeps the old default, its name.
    std::string ssh_host;
    if (r.has(e, "ssh")) {
      n.ssh = r.str(e, "ssh");
      auto t = remote::parse_ssh_target(n.ssh);
      if (!t) r.fail(e["ssh"], "ssh", t.err().message);
      ssh_host = t->host;
    }
    if (r.has(e, "agifarm")) n.agifarm_path = read_path(r, e, "agifarm");
    if (r.has(e, "llama_bin")) n.llama_bin = read_path(r, e, "llama_bin");
    if (r.has(e, "state_dir")) n.state_dir = read_path(r, e, "state_dir");
    if (r.has(e, "address")) {
      n.address = r.str(e, "address");
      if (n.address.empty()) r.fail(e["address"], "address", "is empty");
    } else {
      n.address = ssh_host.empty() ? n.name : ssh_host;
    }
    if (r.has(e, "cpu")) {
      YAML::Node c = e["cpu"];
      r.check_keys(c, "cpu", {"model", "cores", "threads", "ghz"});
      if (r.has(c, "model")) n.cpu_model = r.str(c, "model");
      n.cpu_cores = r.integer(c, "cores", 1, 1 << 16);
      n.cpu_threads = r.has(c, "threads") ? r.integer(c, "threads", 1, 1 << 17) : n.cpu_cores;
      if (n.cpu_threads < n.cpu_cores) r.fail(c["threads"], "threads", "is less than cores");
      const cpu_model_spec* known = n.cpu_model.empty() ? nullptr : cat.match_cpu(n.cpu_model);
      if (known) n.cpu_catalogue_id = known->id;
      if (r.has(c, "ghz")) {
        // the catalogue knows the CPU's FMA width; the generic figure is a guess
        const double fpc = known ? known->flops_per_cycle : cat.cpu.flops_per_cycle_per_core;
        n.cpu_peak_flops = n.cpu_cores * r.number(c, "ghz", 0.1, 10) * 1e9 * fpc;
        n.cpu_flops_source = "declared";
      } else if (known) {
        n.cpu_peak_flops = std::min(n.cpu_cores, known->cores) * known->ghz * 1e9 * known->flops_per_cycle;
        n.cpu_flops_source = "cpu catalogue " + known->id;
      }
    }
    n.ram_bytes = gib_bytes(r.number(e, "ram_gb", 0.125, 1 << 24));
    n.ram_free_bytes = n.ram_bytes;
    if (r.has(e, "ram_free_gb")) {
      n.ram_free_bytes = gib_bytes(r.number(e, "ram_free_gb", 0, 1 << 24));
      if (n.ram_free_bytes > n.ram_bytes) r.fail(e["ram_free_gb"], "ram_free_gb", "is more than ram_gb");
    }
    if (r.has(e, "ram_bandwidth_gbs")) {
      n.ram_bandwidth_bytes_per_s = r.number(e, "ram_bandwidth_gbs", 0.1, 1e5) * 1e9;
      n.ram_bandwidth_source = "declared";
    } else if (const cpu_model_spec* known =
                   n.cpu_catalogue_id.empty() ? nullptr : cat.match_cpu(n.cpu_model)) {
      n.ram_bandwidth_bytes_per_s = known->bandwidth_bytes_per_s;
      n.ram_bandwidth_source = "cpu catalogue " + known->id;
    } else {
      n.ram_bandwidth_bytes_per_s = cat.cpu.ram_bandwidth_bytes_per_s;
      n.ram_bandwidth_source = "catalogue";
    }
    pcie_spec node_pcie;
    if (r.has(e, "pcie")) node_pcie = read_pcie(r, e["pcie"]);
    if (r.has(e, "gpus")) read_gpus(r, e["gpus"], cat, node_pcie, n);
    if (r.has(e, "nvlink")) read_nvlinks(r, e["nvlink"], n, nvlinks);
    inv.nodes.push_back(std::move(n));
  }
  if (r.has(root, "links")) {
    YAML::Node ls = root["links"];
    if (!is_seq(ls)) r.fail(ls, "links", "must be a list of {between: [a, b], ethernet_gbits: N}");
    for (const auto& e : ls) {
      r.check_keys(e, "a link", {"between", "ethernet_gbits", "latency_ms"});
      YAML::Node b = e["between"];
      if (!is_seq(b) || b.size() != 2 || !is_scalar(b[0]) || !is_scalar(b[1]))
        r.fail(b.IsDefined() ? b : YAML::Node(e), "between", "must name two nodes: [a, b]");
      link l = read_ethernet(r, e, inv.default_link.latency_s);
      l.node_a = b[0].Scalar();
      l.node_b = b[1].Scalar();
      for (std::size_t i = 0; i < 2; ++i)
        if (!inv.find_node(b[i].Scalar()))
          r.fail(b[i], "between", fmt::format("no node named '{}'", b[i].Scalar()));
      if (l.node_a == l.node_b) r.fail(b, "between", "a link joins two different nodes");
      for (const auto& o : inv.links)
        if ((o.node_a == l.node_a && o.node_b == l.node_b) || (o.node_a == l.node_b && o.node_b == l.node_a))
          r.fail(b, "between", fmt::format("the link {} <-> {} is declared twice", l.node_a, l.node_b));
      inv.links.push_back(std::move(l));
    }
  }
  for (auto& l : nvlinks) inv.links.push_back(std::move(l));
  for (const auto& n : inv.nodes)
    for (const auto& g : n.gpus) inv.links.push_back(gpu_pcie_link(n.name, g));
  return inv;
}

}  // namespace

result<inventory> parse_inventory(std::string_view yaml_text, std::string_view file_name,
                                  const catalogue& cat) {
  try {
    return parse(yaml_text, file_name, cat);
  } catch (const yaml_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::Exception& e) {
    if (e.mark.line >= 0)
      return make_error(fmt::format("{}:{}:{}: {}", file_name, e.mark.line + 1, e.mark.column + 1, e.msg), 2);
    return make_error(fmt::format("{}: {}", file_name, e.what()), 2);
  }
}

result<inventory> load_inventory(const std::filesystem::path& file, const catalogue& cat) {
  auto text = read_text_file(file);
  if (!text) return text.err();
  return parse_inventory(*text, file.string(), cat);
}

}  // namespace agifarm::hw
