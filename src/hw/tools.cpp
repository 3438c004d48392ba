// Parsers of what the OS and vendor tools report: nvidia-smi CSV, rocm-smi JSON, /proc/cpuinfo,
// /proc/meminfo. Pure functions of text; see hw.hpp for the exact formats.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "hw/hw.hpp"

namespace agifarm::hw {

namespace {

constexpr std::uint64_t k_mib = 1024ull * 1024ull;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

// nvidia-smi writes "[N/A]", "[Not Supported]", "[Unknown Error]", "[Insufficient Permissions]" ... for
// fields it cannot read.
bool is_unavailable(std::string_view v) {
  return v == "N/A" || (v.size() >= 2 && v.front() == '[' && v.back() == ']');
}

bool parse_u64(std::string_view v, std::uint64_t& out) {
  if (v.empty()) return false;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && p == v.data() + v.size();
}

bool parse_double(std::string_view v, double& out) {
  if (v.empty()) return false;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && p == v.data() + v.size() && std::isfinite(out);
}

}  // namespace

std::vector<std::string> nvidia_smi_argv() {
  return {"nvidia-smi",
          "--query-gpu=index,name,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max",
          "--format=csv,noheader,nounits"};
}

std::vector<std::string> rocm_smi_argv() {
  return {"rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"};
}

result<std::vector<gpu>> parse_nvidia_smi_csv(std::string_view text) {
  static constexpr const char* k_fields[] = {
      "index", "name", "memory.total", "memory.free", "pcie.link.gen.max", "pcie.link.width.max"};
  std::vector<gpu> out;
  std::set<int> seen;
  int line_no = 0;
  for (std::string_view raw : split(text, '\n')) {
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty()) continue;
    if (line.find("No devices were found") != std::string_view::npos) continue;
    auto fields = split(line, ',');
    if (fields.size() < 6)
      return make_error(
          fmt::format("nvidia-smi output line {}: {} fields, expected 6 ({}): '{}'", line_no, fields.size(),
                      "index, name, memory.total, memory.free, pcie.link.gen.max, pcie.link.width.max",
                      line.substr(0, 200)),
          2);
    // A name with a comma in it spans several fields: the first is the index, the last four numbers.
    std::string name;
    for (std::size_t i = 1; i + 4 < fields.size(); ++i) {
      if (i > 1) name += ',';
      name += fields[i];
    }
    std::string_view values[6] = {trim(fields[0]),
                                  trim(name),
                                  trim(fields[fields.size() - 4]),
                                  trim(fields[fields.size() - 3]),
                                  trim(fields[fields.size() - 2]),
                                  trim(fields[fields.size() - 1])};
    gpu g;
    g.vendor = gpu_vendor::nvidia;
    g.name = std::string(values[1]);
    if (g.name.empty() || is_unavailable(g.name)) g.name = "unknown NVIDIA GPU";
    std::uint64_t nums[6] = {};
    for (int f : {0, 2, 3, 4, 5}) {
      if (f != 0 && is_unavailable(values[f])) continue;  // unknown stays 0
      if (!parse_u64(values[f], nums[f]))
        return make_error(fmt::format("nvidia-smi output line {}: field '{}' = '{}' is not a whole number",
                                      line_no, k_fields[f], std::string(values[f]).substr(0, 64)),
                          2);
    }
    if (nums[0] > 1024)
      return make_error(fmt::format("nvidia-smi output line {}: index {} is out of range", line_no, nums[0]),
                        2);
    if (nums[2] > (1ull << 40) || nums[3] > (1ull << 40))
      return make_error(fmt::format("nvidia-smi output line {}: memory figure out of range", line_no), 2);
    g.index = static_cast<int>(nums[0]);
    if (!seen.insert(g.index).second)
      return make_error(fmt::format("nvidia-smi output line {}: index {} appears twice", line_no, g.index),
                        2);
    g.vram_bytes = nums[2] * k_mib;
    g.free_vram_bytes = std::min(nums[3] * k_mib, g.vram_bytes);
    g.pcie_gen = nums[4] <= 16 ? static_cast<int>(nums[4]) : 0;
    g.pcie_lanes = nums[5] <= 64 ? static_cast<int>(nums[5]) : 0;
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const gpu& a, const gpu& b) { return a.index < b.index; });
  return out;
}

result<std::vector<gpu>> parse_rocm_smi_json(std::string_view text) {
  boost::json::error_code ec;
  boost::json::value root = boost::json::parse(text, ec);
  if (ec) return make_error(fmt::format("rocm-smi --json output is not JSON: {}", ec.message()), 2);
  if (!root.is_object())
    return make_error("rocm-smi --json output: expected an object of cards {\"card0\": {...}}", 2);
  std::map<int, std::pair<std::string, const boost::json::object*>> cards;
  for (const auto& kv : root.as_object()) {
    std::string_view key = kv.key();
    if (key.substr(0, 4) != "card") continue;  // "system" and others
    int n = 0;
    auto digits = key.substr(4);
    auto [p, e] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (e != std::errc() || p != digits.data() + digits.size() || n < 0 || n > 1024) continue;
    if (!kv.value().is_object())
      return make_error(fmt::format("rocm-smi --json output: \"{}\" must be an object", std::string(key)), 2);
    cards[n] = {std::string(key), &kv.value().as_object()};
  }
  auto get_str = [](const boost::json::object& o, std::string_view k) -> std::string {
    auto it = o.find(k);
    if (it == o.end()) return {};
    if (it->value().is_string()) return std::string(it->value().as_string());
    if (it->value().is_int64()) return std::to_string(it->value().as_int64());
    if (it->value().is_uint64()) return std::to_string(it->value().as_uint64());
    return {};
  };
  std::vector<gpu> out;
  for (const auto& [n, entry] : cards) {
    const auto& [key, obj] = entry;
    gpu g;
    g.vendor = gpu_vendor::amd;
    g.index = static_cast<int>(out.size());
    for (const char* k : {"Card series", "Card SKU", "Device Name", "Card model"}) {
      g.name = std::string(trim(get_str(*obj, k)));
      if (!g.name.empty() && g.name != "N/A") break;
    }
    if (g.name.empty() || g.name == "N/A") g.name = "unknown AMD GPU";
    std::string total = get_str(*obj, "VRAM Total Memory (B)");
    std::string used = get_str(*obj, "VRAM Total Used Memory (B)");
    std::uint64_t t = 0, u = 0;
    if (!total.empty() && total != "N/A" && !parse_u64(trim(total), t))
      return make_error(
          fmt::format("rocm-smi --json output: \"{}\".\"VRAM Total Memory (B)\" = '{}' is not a whole number",
                      key, total.substr(0, 64)),
          2);
    if (!used.empty() && used != "N/A" && !parse_u64(trim(used), u))
      return make_error(
          fmt::format(
              "rocm-smi --json output: \"{}\".\"VRAM Total Used Memory (B)\" = '{}' is not a whole number",
              key, used.substr(0, 64)),
          2);
    if (t > (1ull << 50))
      return make_error(fmt::format("rocm-smi --json output: \"{}\": VRAM total out of range", key), 2);
    g.vram_bytes = t;
    g.free_vram_bytes = u <= t ? t - u : 0;
    out.push_back(std::move(g));
  }
  return out;
}

result<cpu_info> parse_cpuinfo(std::string_view text) {
  cpu_info info;
  std::set<std::pair<std::string, std::string>> cores;  // (physical id, core id)
  std::set<std::string> packages;
  int cpu_cores_field = 0;
  std::string phys, hardware, arm_part;
  bool have_core_ids = true;
  std::string flags;
  int line_no = 0;
  for (std::string_view raw : split(text, '\n')) {
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty()) continue;
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;  // "power management" style oddities have a colon; others skip
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    if (key == "processor") {
      std::uint64_t id = 0;
      if (!parse_u64(val, id))
        return make_error(fmt::format("/proc/cpuinfo line {}: processor '{}' is not a number", line_no,
                                      std::string(val).substr(0, 64)),
                          2);
      ++info.threads;
      phys.clear();
    } else if (key == "model name" && info.model.empty()) {
      info.model = std::string(val);
    } else if (key == "Hardware" && hardware.empty()) {
      hardware = std::string(val);
    } else if (key == "CPU part" && arm_part.empty()) {
      arm_part = std::string(val);
    } else if (key == "physical id") {
      phys = std::string(val);
      packages.insert(phys);
    } else if (key == "core id") {
      cores.insert({phys, std::string(val)});
    } else if (key == "cpu cores") {
      std::uint64_t c = 0;
      if (parse_u64(val, c) && c < 100000) cpu_cores_field = static_cast<int>(c);
    } else if (key == "cpu MHz") {
      double mhz = 0;
      if (parse_double(val, mhz) && mhz > info.mhz && mhz < 1e6) info.mhz = mhz;
    } else if ((key == "flags" || key == "Features") && flags.empty()) {
      flags = " " + std::string(val) + " ";
    }
  }
  if (info.threads == 0) return make_error("/proc/cpuinfo: no 'processor' entries", 2);
  if (cores.empty()) have_core_ids = false;
  if (have_core_ids)
    info.cores = static_cast<int>(cores.size());
  else if (cpu_cores_field > 0)
    info.cores = cpu_cores_field * std::max<int>(1, static_cast<int>(packages.size()));
  else
    info.cores = info.threads;
  info.cores = std::clamp(info.cores, 1, info.threads);
  if (info.model.empty())
    info.model =
        !hardware.empty() ? hardware : (!arm_part.empty() ? "ARM CPU part " + arm_part : "unknown CPU");
  auto has = [&](const char* f) { return flags.find(std::string(" ") + f + " ") != std::string::npos; };
  if (has("avx512f"))
    info.flops_per_cycle_per_core = 64;
  else if (has("avx2") && has("fma"))
    info.flops_per_cycle_per_core = 32;
  else if (has("avx"))
    info.flops_per_cycle_per_core = 16;
  else if (has("asimd"))
    info.flops_per_cycle_per_core = 16;
  else if (has("sse2"))
    info.flops_per_cycle_per_core = 8;
  return info;
}

result<mem_info> parse_meminfo(std::string_view text) {
  std::map<std::string, std::uint64_t, std::less<>> kb;
  int line_no = 0;
  for (std::string_view raw : split(text, '\n')) {
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty()) continue;
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      return make_error(fmt::format("/proc/meminfo line {}: expected 'Key: value kB'", line_no), 2);
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    bool is_kb = val.size() >= 2 && val.substr(val.size() - 2) == "kB";
    if (is_kb) val = trim(val.substr(0, val.size() - 2));
    std::uint64_t v = 0;
    if (!parse_u64(val, v)) {
      if (key == "MemTotal" || key == "MemAvailable" || key == "MemFree")
        return make_error(fmt::format("/proc/meminfo line {}: {} '{}' is not a number", line_no,
                                      std::string(key), std::string(val).substr(0, 64)),
                          2);
      continue;
    }
    if (v > (1ull << 44))
      return make_error(fmt::format("/proc/meminfo line {}: {} is out of range", line_no, std::string(key)),
                        2);
    kb[std::string(key)] = is_kb ? v * 1024 : v;
  }
  auto it = kb.find("MemTotal");
  if (it == kb.end() || it->second == 0) return make_error("/proc/meminfo: no MemTotal", 2);
  mem_info m;
  m.total_bytes = it->second;
  if (auto a = kb.find("MemAvailable"); a != kb.end())
    m.available_bytes = a->second;
  else
    m.available_bytes = kb["MemFree"] + kb["Buffers"] + kb["Cached"];
  m.available_bytes = std::min(m.available_bytes, m.total_bytes);
  return m;
}

}  // namespace agifarm::hw
