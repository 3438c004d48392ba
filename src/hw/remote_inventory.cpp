// An inventory written from the machines' own discovery over ssh (`agifarm hw --ssh`).
#include "hw/remote_inventory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace agifarm::hw {

namespace {

constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;
constexpr std::size_t k_max_gpus = 256;    // as the inventory parser allows per node
constexpr std::size_t k_max_threads = 16;  // targets asked at once
constexpr double k_max_ram_gb = 1 << 24;   // the inventory parser's ranges
constexpr double k_max_vram_gb = 1 << 20;

// ---- reading `agifarm hw --json` -----------------------------------------------------------------

struct json_error {
  std::string message;
};

const boost::json::value* member(const boost::json::object& o, std::string_view key) {
  return o.if_contains(key);
}

// A finite number >= 0, from any JSON number kind; nullopt when absent; an error when of another type.
std::optional<double> number(const boost::json::object& o, std::string_view key, std::string_view where) {
  const auto* v = member(o, key);
  if (!v || v->is_null()) return std::nullopt;
  double d = 0;
  if (v->is_int64())
    d = static_cast<double>(v->as_int64());
  else if (v->is_uint64())
    d = static_cast<double>(v->as_uint64());
  else if (v->is_double())
    d = v->as_double();
  else
    throw json_error{fmt::format("{}.{}: is not a number", where, key)};
  if (!std::isfinite(d) || d < 0)
    throw json_error{fmt::format("{}.{}: {} is not a figure (finite, >= 0)", where, key, d)};
  return d;
}

double figure(const boost::json::object& o, std::string_view key, std::string_view where) {
  return number(o, key, where).value_or(0);
}

int small_int(const boost::json::object& o, std::string_view key, std::string_view where, int hi) {
  double d = figure(o, key, where);
  if (d > hi || d != std::floor(d))
    throw json_error{fmt::format("{}.{}: {} is not a whole number up to {}", where, key, d, hi)};
  return static_cast<int>(d);
}

std::uint64_t bytes(const boost::json::object& o, std::string_view key, std::string_view where) {
  double d = figure(o, key, where);
  if (d >= 1.8e19) throw json_error{fmt::format("{}.{}: {} bytes is too large", where, key, d)};
  return static_cast<std::uint64_t>(d);
}

std::string text(const boost::json::object& o, std::string_view key, std::string_view where) {
  const auto* v = member(o, key);
  if (!v || v->is_null()) return {};
  if (!v->is_string()) throw json_error{fmt::format("{}.{}: is not a string", where, key)};
  return std::string(v->as_string());
}

gpu read_gpu(const boost::json::value& v, std::size_t i) {
  std::string where = fmt::format("nodes[0].gpus[{}]", i);
  if (!v.is_object()) throw json_error{where + ": is not an object"};
  const auto& o = v.as_object();
  gpu g;
  g.index = static_cast<int>(i);  // the position is the index; the reported one may be anything
  g.name = text(o, "name", where);
  g.catalogue_id = text(o, "catalogue_id", where);
  std::string vendor = text(o, "vendor", where);
  g.vendor = vendor == "nvidia" ? gpu_vendor::nvidia : vendor == "amd" ? gpu_vendor::amd : gpu_vendor::none;
  g.vram_bytes = bytes(o, "vram_bytes", where);
  g.free_vram_bytes = std::min(bytes(o, "free_vram_bytes", where), g.vram_bytes);
  g.bandwidth_bytes_per_s = figure(o, "bandwidth_bytes_per_s", where);
  g.fp16_tflops = figure(o, "fp16_tflops", where);
  g.pcie_gen = small_int(o, "pcie_gen", where, 64);
  g.pcie_lanes = small_int(o, "pcie_lanes", where, 64);
  return g;
}

node read_hw_json(std::string_view json_text) {
  // The JSON is one line; anything a login script printed before it is skipped.
  auto parse = [](std::string_view s, boost::system::error_code& ec) { return boost::json::parse(s, ec); };
  boost::system::error_code ec;
  boost::json::value root = parse(json_text, ec);
  if (ec) {
    std::string_view s = json_text;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
    auto nl = s.rfind('\n');
    if (nl != std::string_view::npos) {
      boost::system::error_code ec2;
      boost::json::value last = parse(s.substr(nl + 1), ec2);
      if (!ec2) {
        root = std::move(last);
        ec = ec2;
      }
    }
  }
  if (ec) {
    if (json_text.find_first_not_of(" \t\r\n") == std::string_view::npos)
      throw json_error{"the output is empty"};
    throw json_error{fmt::format("not JSON ({})", ec.message())};
  }
  if (!root.is_object()) throw json_error{"not a JSON object"};
  const auto* nodes = member(root.as_object(), "nodes");
  if (!nodes || !nodes->is_array())
    throw json_error{"nodes: missing (not the output of `agifarm hw --json`)"};
  if (nodes->as_array().size() != 1)
    throw json_error{fmt::format("nodes: {} nodes where discovery gives one", nodes->as_array().size())};
  const auto& nv = nodes->as_array()[0];
  if (!nv.is_object()) throw json_error{"nodes[0]: is not an object"};
  const auto& o = nv.as_object();
  const std::string where = "nodes[0]";
  node n;
  n.name = text(o, "name", where);
  n.address = text(o, "address", where);
  n.cpu_model = text(o, "cpu_model", where);
  n.cpu_cores = small_int(o, "cpu_cores", where, 1 << 16);
  n.cpu_threads = small_int(o, "cpu_threads", where, 1 << 17);
  n.cpu_peak_flops = figure(o, "cpu_peak_flops", where);
  if (!number(o, "ram_bytes", where)) throw json_error{"nodes[0].ram_bytes: missing"};
  n.ram_bytes = bytes(o, "ram_bytes", where);
  n.ram_free_bytes = std::min(bytes(o, "ram_free_bytes", where), n.ram_bytes);
  n.ram_bandwidth_bytes_per_s = figure(o, "ram_bandwidth_bytes_per_s", where);
  n.ram_bandwidth_source = text(o, "ram_bandwidth_source", where);
  if (const auto* gs = member(o, "gpus"); gs && !gs->is_null()) {
    if (!gs->is_array()) throw json_error{"nodes[0].gpus: is not a list"};
    if (gs->as_array().size() > k_max_gpus)
      throw json_error{fmt::format("nodes[0].gpus: more than {} GPUs", k_max_gpus)};
    for (std::size_t i = 0; i < gs->as_array().size(); ++i) n.gpus.push_back(read_gpu(gs->as_array()[i], i));
  }
  return n;
}

// ---- writing YAML --------------------------------------------------------------------------------

// A string as a YAML scalar: plain when it cannot be read as anything else, else double-quoted.
std::string yaml_str(std::string_view s) {
  static const std::set<std::string, std::less<>> k_special = {"null", "true", "false", "yes", "no",
                                                               "on",   "off",  "y",     "n"};
  std::string lower;
  for (char c : s) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  bool plain =
      !s.empty() && !k_special.contains(lower) &&
      (std::isalpha(static_cast<unsigned char>(s.front())) || s.front() == '/' || s.front() == '_') &&
      s.back() != ':' && std::all_of(s.begin(), s.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/' || c == '@' || c == ':' ||
               c == '+';
      });
  if (plain) return std::string(s);
  std::string q = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      q += '\\';
      q += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      q += fmt::format("\\x{:02x}", c);
    } else {
      q += static_cast<char>(c);
    }
  }
  return q + "\"";
}

// A figure with at most `decimals` decimals, trailing zeros dropped: 62.80, 3 -> "62.8", "3".
std::string fig(double v, int decimals) {
  std::string s = fmt::format("{:.{}f}", v, decimals);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

// fig(), with more decimals where rounding would fall below `lo` (0.125 GiB is "0.125", not "0.12").
std::string fig_at_least(double v, int decimals, double lo) {
  std::string s = fig(v, decimals);
  for (int d = decimals + 1; d <= 9 && std::strtod(s.c_str(), nullptr) < lo; ++d) s = fig(v, d);
  return s;
}

bool valid_lanes(int l) { return l == 1 || l == 2 || l == 4 || l == 8 || l == 16 || l == 32; }

// The GPU as one list entry ("      - model: rtx3090\n" ...); the indent is that of the '-'.
result<std::string> gpu_yaml(const gpu& g, const node& n, const catalogue& cat) {
  const std::string ind = "      ";
  const gpu_spec* spec = g.catalogue_id.empty() ? nullptr : cat.find(g.catalogue_id);
  if (!spec && !g.name.empty()) spec = cat.match_reported(g.name, g.vram_bytes);
  std::string out;
  int default_gen = 4, default_lanes = 16;
  if (spec) {
    out += ind + "- model: " + yaml_str(spec->id) + "\n";
    // The discovered memory where it is not the catalogue's (a modified card, a variant).
    double vram_gb = static_cast<double>(g.vram_bytes) / k_gib;
    if (g.vram_bytes > 0 && spec->vram_bytes > 0 && vram_gb >= 0.125 && vram_gb <= k_max_vram_gb &&
        std::fabs(static_cast<double>(g.vram_bytes) / static_cast<double>(spec->vram_bytes) - 1) > 0.02)
      out += ind + "  vram_gb: " + fig_at_least(vram_gb, 2, 0.125) + "\n";
    default_gen = spec->pcie_gen;
    default_lanes = spec->pcie_lanes;
  } else {
    // Figures outside what the inventory accepts count as unknown (a broken report).
    std::vector<std::string> unknown;
    double vram_gb = static_cast<double>(g.vram_bytes) / k_gib;
    if (vram_gb < 0.125 || vram_gb > k_max_vram_gb) unknown.emplace_back("memory size");
    if (g.bandwidth_bytes_per_s < 1e9 || g.bandwidth_bytes_per_s > 1e15)
      unknown.emplace_back("memory bandwidth");
    if (g.fp16_tflops < 0.01 || g.fp16_tflops > 1e6) unknown.emplace_back("FP16 TFLOPS");
    if (!unknown.empty()) {
      std::string what;
      for (std::size_t i = 0; i < unknown.size(); ++i)
        what += (i ? (i + 1 == unknown.size() ? " and " : ", ") : "") + unknown[i];
      return make_error(fmt::format(
          "node '{}'{}: GPU {} '{}' is not in the catalogue ({}) and its {} {} unknown; add it "
          "to the catalogue (data/gpus.yaml) or write this node's inventory by hand",
          n.name, n.ssh.empty() ? "" : fmt::format(" (ssh {})", n.ssh), g.index, g.name,
          cat.source.empty() ? "gpus.yaml" : cat.source, what, unknown.size() > 1 ? "are" : "is"));
    }
    out += ind + "- name: " + yaml_str(g.name.empty() ? fmt::format("GPU {}", g.index) : g.name) + "\n";
    if (g.vendor != gpu_vendor::none) out += ind + "  vendor: " + std::string(to_string(g.vendor)) + "\n";
    out += ind + "  vram_gb: " + fig_at_least(vram_gb, 2, 0.125) + "\n";
    out += ind + "  bandwidth_gbs: " + fig(g.bandwidth_bytes_per_s / 1e9, 1) + "\n";
    out += ind + "  tflops: " + fig_at_least(g.fp16_tflops, 2, 0.01) + "\n";
  }
  if (g.pcie_gen >= 1 && g.pcie_gen <= 7 && valid_lanes(g.pcie_lanes) &&
      (g.pcie_gen != default_gen || g.pcie_lanes != default_lanes))
    out += ind + fmt::format("  pcie: {{gen: {}, lanes: {}}}\n", g.pcie_gen, g.pcie_lanes);
  return out;
}

result<std::string> node_yaml(const node& n, const catalogue& cat) {
  std::string out = "  - name: " + yaml_str(n.name) + "\n";
  if (!n.ssh.empty()) out += "    ssh: " + yaml_str(n.ssh) + "\n";
  out += "    address: " + yaml_str(n.address) + "\n";
  if (!n.agifarm_path.empty()) out += "    agifarm: " + yaml_str(n.agifarm_path) + "\n";
  if (!n.llama_bin.empty()) out += "    llama_bin: " + yaml_str(n.llama_bin) + "\n";
  if (!n.state_dir.empty()) out += "    state_dir: " + yaml_str(n.state_dir) + "\n";
  if (n.cpu_cores > 0 && n.cpu_cores <= (1 << 16)) {
    out += "    cpu: {";
    if (!n.cpu_model.empty()) out += "model: " + yaml_str(n.cpu_model) + ", ";
    out += fmt::format("cores: {}, threads: {}}}\n", n.cpu_cores,
                       std::clamp(n.cpu_threads, n.cpu_cores, 1 << 17));
  }
  double ram_gb = static_cast<double>(n.ram_bytes) / k_gib;
  if (ram_gb < 0.125 || ram_gb > k_max_ram_gb)
    return make_error(fmt::format("node '{}'{}: its RAM size is unknown ({} bytes)", n.name,
                                  n.ssh.empty() ? "" : fmt::format(" (ssh {})", n.ssh), n.ram_bytes));
  out += "    ram_gb: " + fig_at_least(ram_gb, 2, 0.125) + "\n";
  // A figure of the machine itself; the catalogue's fallback is left to the reader's catalogue.
  const auto& src = n.ram_bandwidth_source;
  if ((src == "measured" || src == "cache" || src == "declared") && n.ram_bandwidth_bytes_per_s >= 0.1e9 &&
      n.ram_bandwidth_bytes_per_s <= 1e14)
    out += fmt::format("    ram_bandwidth_gbs: {}    # {}\n", fig(n.ram_bandwidth_bytes_per_s / 1e9, 1), src);
  if (!n.gpus.empty()) {
    out += "    gpus:\n";
    for (const auto& g : n.gpus) {
      auto y = gpu_yaml(g, n, cat);
      if (!y) return y.err();
      out += *y;
    }
  }
  return out;
}

std::string first_line(std::string_view s) {
  while (!s.empty() && (s.front() == '\n' || s.front() == '\r' || s.front() == ' ')) s.remove_prefix(1);
  std::string l(s.substr(0, s.find('\n')));
  while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
  return l.size() > 300 ? l.substr(0, 300) + "..." : l;
}

// "ssh T: ..." for an error of the shell, unless it already says so.
std::string about(const std::string& target, const remote::ssh_target& t, const std::string& message) {
  if (message.rfind("ssh " + t.text(), 0) == 0 || message.rfind("ssh " + target, 0) == 0) return message;
  return fmt::format("ssh {}: {}", target, message);
}

struct answer {
  std::string hostname;
  node hw;
  std::string error;  // "" when the target answered well
};

answer ask(remote::remote_shell& shell, const std::string& target, const remote::ssh_target& t,
           const remote_inventory_options& opt) {
  answer a;
  auto host = shell.run(t, {"uname", "-n"}, "", opt.timeout);
  if (!host) {
    a.error = about(target, t, host.err().message);
    return a;
  }
  if (host->exit_code != 0) {
    a.error = fmt::format("ssh {}: `uname -n` exited {}: {}", target, host->exit_code, first_line(host->err));
    return a;
  }
  a.hostname = first_line(host->out);
  const std::string agifarm = opt.agifarm_path.empty() ? "agifarm" : opt.agifarm_path;
  std::vector<std::string> argv{agifarm, "hw", "--json"};
  if (opt.no_measure) argv.emplace_back("--no-measure");
  std::string shown = agifarm + " hw --json" + (opt.no_measure ? " --no-measure" : "");
  auto hw = shell.run(t, argv, "", opt.timeout);
  if (!hw) {
    a.error = about(target, t, hw.err().message);
    return a;
  }
  if (hw->exit_code == 127 || hw->exit_code == 126) {
    a.error = fmt::format(
        "ssh {}: {} {} there ({}); install agifarm on that machine{}", target, agifarm,
        hw->exit_code == 127 ? "is not found" : "cannot be run", first_line(hw->err),
        opt.agifarm_path.empty() ? ", or give its path with --agifarm PATH" : " or fix --agifarm");
    return a;
  }
  if (hw->exit_code != 0) {
    a.error = fmt::format("ssh {}: `{}` exited {}: {}", target, shown, hw->exit_code, first_line(hw->err));
    return a;
  }
  try {
    a.hw = read_hw_json(hw->out);
  } catch (const json_error& e) {
    a.error = fmt::format("ssh {}: `{}` did not print its hardware JSON: {}", target, shown, e.message);
  }
  return a;
}

}  // namespace

result<node> node_from_hw_json(std::string_view json_text) {
  try {
    return read_hw_json(json_text);
  } catch (const json_error& e) {
    return make_error(e.message);
  }
}

std::string node_name_from_hostname(std::string_view hostname) {
  std::string s;
  for (unsigned char c : hostname.substr(0, 128))
    s.push_back(std::isalnum(c) || c == '-' || c == '_' || c == '.' ? static_cast<char>(c) : '-');
  // All separators is no name.
  if (std::all_of(s.begin(), s.end(), [](char c) { return c == '-' || c == '_' || c == '.'; })) return {};
  return s;
}

result<std::string> inventory_yaml(const std::vector<node>& nodes, const catalogue& cat,
                                   const std::vector<std::string>& header) {
  std::string out;
  for (const auto& h : header) {
    std::string_view rest = h;
    for (;;) {
      auto nl = rest.find('\n');
      out += "# " + std::string(rest.substr(0, nl)) + "\n";
      if (nl == std::string_view::npos) break;
      rest.remove_prefix(nl + 1);
    }
  }
  out +=
      "# Links between machines are not discovered: declare them below (`links:`, `default_link:`;\n"
      "# docs/hardware.md). Until then every pair of nodes counts as 1 Gbit/s, 0.2 ms.\n"
      "nodes:\n";
  for (const auto& n : nodes) {
    auto y = node_yaml(n, cat);
    if (!y) return y.err();
    out += *y;
  }
  out += "# default_link: {ethernet_gbits: 1, latency_ms: 0.2}\n";
  if (nodes.size() >= 2) {
    out += "# links:\n";
    for (std::size_t i = 1; i < nodes.size(); ++i)
      out += fmt::format("#   - between: [{}, {}]\n#     ethernet_gbits: 10\n", yaml_str(nodes[0].name),
                         yaml_str(nodes[i].name));
  }
  return out;
}

result<std::string> discover_remote_inventory(remote::remote_shell& shell, const catalogue& cat,
                                              const remote_inventory_options& opt) {
  if (opt.targets.empty()) return make_error("no ssh target given", 2);
  std::vector<remote::ssh_target> targets;
  std::set<std::string> seen;
  for (const auto& s : opt.targets) {
    auto t = remote::parse_ssh_target(s);
    if (!t) return t.err();
    if (!seen.insert(t->text()).second)
      return make_error(fmt::format("ssh target '{}' is given twice", s), 2);
    targets.push_back(std::move(*t));
  }

  std::vector<answer> answers(targets.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < targets.size();)
      answers[i] = ask(shell, opt.targets[i], targets[i], opt);
  };
  std::vector<std::thread> threads;
  std::size_t n_threads = std::min(targets.size(), k_max_threads);
  for (std::size_t i = 1; i < n_threads; ++i) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();

  std::string errors;
  for (const auto& a : answers)
    if (!a.error.empty()) errors += (errors.empty() ? "" : "\n") + a.error;
  if (!errors.empty()) return make_error(errors);

  std::vector<node> nodes;
  std::set<std::string> names;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    node n = std::move(answers[i].hw);
    std::string base = node_name_from_hostname(answers[i].hostname);
    if (base.empty()) base = node_name_from_hostname(targets[i].host);
    if (base.empty()) base = "node";
    base = base.substr(0, 120);  // room for a suffix within the 128 a name may have
    n.name = base;
    for (int k = 2; names.contains(n.name); ++k) n.name = fmt::format("{}-{}", base, k);
    names.insert(n.name);
    n.ssh = opt.targets[i];
    n.address = targets[i].host;
    n.agifarm_path = opt.agifarm_path;
    nodes.push_back(std::move(n));
  }
  std::vector<std::string> header{
      fmt::format("Written by `agifarm hw --ssh` from each machine's own `agifarm hw --json{}`.",
                  opt.no_measure ? " --no-measure" : "")};
  return inventory_yaml(nodes, cat, header);
}

}  // namespace agifarm::hw
