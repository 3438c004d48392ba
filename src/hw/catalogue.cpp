// The GPU catalogue (data/gpus.yaml): parsing, lookup by inventory name, matching of reported names.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "hw/hw.hpp"
#include "hw/names.hpp"
#include "hw/yaml_util.hpp"

#ifndef AGIFARM_DATA_DIR
#define AGIFARM_DATA_DIR ""
#endif

namespace agifarm::hw {

using detail::is_scalar;
using detail::is_seq;
using detail::yaml_error;
using detail::yaml_reader;

namespace {

constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;

gpu_vendor parse_vendor(const yaml_reader& r, const YAML::Node& map, std::string_view key) {
  std::string v = r.str(map, key);
  if (v == "nvidia") return gpu_vendor::nvidia;
  if (v == "amd") return gpu_vendor::amd;
  if (v == "none") return gpu_vendor::none;
  r.fail(map[std::string(key)], key, fmt::format("'{}' is not a vendor (nvidia, amd, none)", v));
}

std::vector<std::string> string_list(const yaml_reader& r, const YAML::Node& map, std::string_view key) {
  std::vector<std::string> out;
  if (!r.has(map, key)) return out;
  YAML::Node n = map[std::string(key)];
  if (!is_seq(n)) r.fail(n, key, "must be a list of strings");
  for (const auto& item : n) {
    if (!is_scalar(item)) r.fail(item, key, "must be a list of strings");
    out.push_back(normalize_name(item.Scalar()));
    if (out.back().empty()) r.fail(item, key, "an empty name matches everything");
  }
  return out;
}

}  // namespace

result<catalogue> parse_catalogue(std::string_view yaml_text, std::string_view file_name) {
  yaml_reader r(file_name);
  try {
    const YAML::Node root = detail::load_yaml(yaml_text, file_name);
    r.check_keys(root, "the catalogue", {"gpus", "cpu"});
    catalogue cat;
    cat.source = std::string(file_name);
    YAML::Node gpus = root["gpus"];
    if (!is_seq(gpus)) r.fail(gpus.IsDefined() ? gpus : root, "gpus", "must be a list of GPU entries");
    for (const auto& e : gpus) {
      r.check_keys(e, "a catalogue GPU",
                   {"id", "name", "vendor", "vram_gib", "bandwidth_gbs", "fp16_tflops", "generation",
                    "pcie_gen", "pcie_lanes", "match", "aliases"});
      gpu_spec s;
      s.id = r.str(e, "id");
      if (s.id.empty() || normalize_name(s.id).empty()) r.fail(e["id"], "id", "must not be empty");
      if (cat.find(s.id)) r.fail(e["id"], "id", fmt::format("'{}' is already defined", s.id));
      s.display_name = r.has(e, "name") ? r.str(e, "name") : s.id;
      s.vendor = parse_vendor(r, e, "vendor");
      s.vram_bytes = static_cast<std::uint64_t>(r.number(e, "vram_gib", 0.125, 1 << 20) * k_gib);
      s.bandwidth_bytes_per_s = r.number(e, "bandwidth_gbs", 1, 1e6) * 1e9;
      s.fp16_tflops = r.number(e, "fp16_tflops", 0, 1e6);
      if (r.has(e, "generation")) s.generation = r.str(e, "generation");
      s.pcie_gen = r.has(e, "pcie_gen") ? r.integer(e, "pcie_gen", 1, 7) : 4;
      s.pcie_lanes = r.has(e, "pcie_lanes") ? r.integer(e, "pcie_lanes", 1, 32) : 16;
      s.match = string_list(r, e, "match");
      s.aliases = string_list(r, e, "aliases");
      for (const auto& a : s.aliases)
        if (cat.find(a)) r.fail(e["aliases"], "aliases", fmt::format("'{}' already names another GPU", a));
      cat.gpus.push_back(std::move(s));
    }
    if (r.has(root, "cpu")) {
      YAML::Node c = root["cpu"];
      r.check_keys(c, "the cpu entry", {"ram_bandwidth_gbs", "flops_per_cycle_per_core"});
      if (r.has(c, "ram_bandwidth_gbs"))
        cat.cpu.ram_bandwidth_bytes_per_s = r.number(c, "ram_bandwidth_gbs", 0.1, 1e5) * 1e9;
      if (r.has(c, "flops_per_cycle_per_core"))
        cat.cpu.flops_per_cycle_per_core = r.number(c, "flops_per_cycle_per_core", 0, 4096);
    }
    return cat;
  } catch (const yaml_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::Exception& e) {
    return make_error(fmt::format("{}:{}:{}: {}", file_name, e.mark.line + 1, e.mark.column + 1, e.msg), 2);
  }
}

result<std::vector<cpu_model_spec>> parse_cpu_catalogue(std::string_view yaml_text,
                                                        std::string_view file_name) {
  yaml_reader r(file_name);
  try {
    const YAML::Node root = detail::load_yaml(yaml_text, file_name);
    r.check_keys(root, "the CPU catalogue", {"cpus"});
    YAML::Node cpus = root["cpus"];
    if (!is_seq(cpus)) r.fail(cpus.IsDefined() ? cpus : root, "cpus", "must be a list of CPU entries");
    std::vector<cpu_model_spec> out;
    for (const auto& e : cpus) {
      r.check_keys(e, "a catalogue CPU",
                   {"id", "name", "match", "cores", "ghz", "flops_per_cycle", "memory", "bandwidth_gbs"});
      cpu_model_spec c;
      c.id = r.str(e, "id");
      if (normalize_name(c.id).empty()) r.fail(e["id"], "id", "must not be empty");
      for (const auto& o : out)
        if (o.id == c.id) r.fail(e["id"], "id", fmt::format("'{}' is already defined", c.id));
      c.display_name = r.has(e, "name") ? r.str(e, "name") : c.id;
      c.match = string_list(r, e, "match");
      if (c.match.empty()) r.fail(e, "match", "needs at least one name");
      c.cores = r.integer(e, "cores", 1, 4096);
      c.ghz = r.number(e, "ghz", 0.1, 10);
      c.flops_per_cycle = r.number(e, "flops_per_cycle", 1, 1024);
      if (r.has(e, "memory")) c.memory = r.str(e, "memory");
      c.bandwidth_bytes_per_s = r.number(e, "bandwidth_gbs", 0.1, 1e5) * 1e9;
      out.push_back(std::move(c));
    }
    return out;
  } catch (const yaml_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::Exception& e) {
    return make_error(fmt::format("{}:{}:{}: {}", file_name, e.mark.line + 1, e.mark.column + 1, e.msg), 2);
  }
}

const cpu_model_spec* catalogue::match_cpu(std::string_view model) const {
  const std::string name = normalize_name(model);
  const cpu_model_spec* best = nullptr;
  std::size_t best_len = 0;
  for (const auto& c : cpus)
    for (const auto& m : c.match)
      if (!m.empty() && m.size() > best_len && name.find(m) != std::string::npos) {
        best = &c;
        best_len = m.size();
      }
  return best;
}

result<std::string> read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return make_error(fmt::format("{}: cannot open", file.string()), 2);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(fmt::format("{}: read error", file.string()), 2);
  return ss.str();
}

result<catalogue> load_catalogue(const std::filesystem::path& file) {
  auto text = read_text_file(file);
  if (!text) return text.err();
  return parse_catalogue(*text, file.string());
}

std::filesystem::path data_dir() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const char* env = std::getenv("AGIFARM_DATA_DIR"); env && *env) return fs::path(env);
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = 0;
    fs::path installed = fs::path(buf).parent_path().parent_path() / "share" / "agifarm";
    if (fs::exists(installed / "gpus.yaml", ec)) return installed;
  }
  return fs::path(AGIFARM_DATA_DIR);
}

result<catalogue> load_default_catalogue() {
  auto dir = data_dir();
  if (dir.empty()) return make_error("the GPU catalogue gpus.yaml was not found: set AGIFARM_DATA_DIR", 2);
  auto cat = load_catalogue(dir / "gpus.yaml");
  if (!cat) return cat;
  std::error_code ec;
  if (std::filesystem::exists(dir / "cpus.yaml", ec)) {
    auto text = read_text_file(dir / "cpus.yaml");
    if (!text) return text.err();
    auto cpus = parse_cpu_catalogue(*text, (dir / "cpus.yaml").string());
    if (!cpus) return cpus.err();
    cat->cpus = std::move(cpus).value();
  }
  return cat;
}

const gpu_spec* catalogue::find(std::string_view id) const {
  std::string key = normalize_name(id);
  if (key.empty()) return nullptr;
  for (const auto& g : gpus) {
    if (normalize_name(g.id) == key) return &g;
    for (const auto& a : g.aliases)
      if (a == key) return &g;
  }
  return nullptr;
}

const gpu_spec* catalogue::match_reported(std::string_view reported_name, std::uint64_t vram_bytes) const {
  std::string name = normalize_name(reported_name);
  const gpu_spec* best = nullptr;
  std::size_t best_len = 0;
  double best_dist = 0;
  for (const auto& g : gpus) {
    if (vram_bytes > 0 && g.vram_bytes > 0) {
      double ratio = static_cast<double>(vram_bytes) / static_cast<double>(g.vram_bytes);
      if (ratio < 0.85 || ratio > 1.10) continue;
    }
    for (const auto& m : g.match) {
      if (m.empty() || name.find(m) == std::string::npos) continue;
      double dist =
          vram_bytes ? std::fabs(static_cast<double>(vram_bytes) - static_cast<double>(g.vram_bytes)) : 0;
      if (!best || m.size() > best_len || (m.size() == best_len && dist < best_dist)) {
        best = &g;
        best_len = m.size();
        best_dist = dist;
      }
    }
  }
  return best;
}

std::vector<std::string> catalogue::nearest(std::string_view name, std::size_t n) const {
  std::string key = normalize_name(name);
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& g : gpus) {
    std::size_t d = edit_distance(key, normalize_name(g.id));
    for (const auto& a : g.aliases) d = std::min(d, edit_distance(key, a));
    // A name that is part of an id ("h100" in "h100-sxm") is a near miss however long the rest is.
    if (!key.empty() && normalize_name(g.id).find(key) != std::string::npos) d = std::min<std::size_t>(d, 1);
    scored.emplace_back(d, g.id);
  }
  std::stable_sort(scored.begin(), scored.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (std::size_t i = 0; i < scored.size() && out.size() < n; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace agifarm::hw
