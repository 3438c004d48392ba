// Discovery of the local machine through system_access (tools on PATH, /proc files), and the real
// system_access: posix_spawnp with stdout captured and a deadline.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "hw/hw.hpp"
#include "hw/names.hpp"

extern char** environ;

namespace agifarm::hw {

namespace {

class posix_system final : public system_access {
 public:
  result<std::string> run(const std::vector<std::string>& argv) override {
    if (argv.empty()) return make_error("run: empty command");
    int out_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0)
      return make_error(fmt::format("{}: pipe: {}", argv[0], std::strerror(errno)));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    pid_t pid = 0;
    int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out_pipe[1]);
    if (rc != 0) {
      ::close(out_pipe[0]);
      if (rc == ENOENT) return make_error(fmt::format("{}: not found", argv[0]));
      return make_error(fmt::format("{}: cannot start: {}", argv[0], std::strerror(rc)));
    }
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool timed_out = false;
    for (;;) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
              .count();
      if (left <= 0) {
        timed_out = true;
        break;
      }
      pollfd p{out_pipe[0], POLLIN, 0};
      int pr = ::poll(&p, 1, static_cast<int>(left));
      if (pr < 0 && errno == EINTR) continue;
      if (pr <= 0) {
        timed_out = pr == 0;
        break;
      }
      char buf[65536];
      ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      if (out.size() > (16u << 20)) {
        timed_out = true;  // absurd output: stop like a hang
        break;
      }
    }
    ::close(out_pipe[0]);
    if (timed_out) ::kill(pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) return make_error(fmt::format("{}: no answer within 10 s (killed)", argv[0]));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) return make_error(fmt::format("{}: not found", argv[0]));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      return make_error(fmt::format("{}: exited with status {}", argv[0],
                                    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)));
    return out;
  }

  result<std::string> read_file(const std::filesystem::path& path) override { return read_text_file(path); }
};

std::filesystem::path default_cache_file() {
  namespace fs = std::filesystem;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "agifarm" / "hw.json";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "agifarm" / "hw.json";
  return {};
}

// The cache holds one measurement, valid for the same CPU model, thread count and RAM size.
std::optional<double> read_cache(const std::filesystem::path& file, const node& n) {
  auto text = read_text_file(file);
  if (!text) return std::nullopt;
  boost::json::error_code ec;
  auto v = boost::json::parse(*text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  auto str = [&](const char* k) -> std::string {
    auto it = o.find(k);
    return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
  };
  auto num = [&](const char* k) -> double {
    auto it = o.find(k);
    if (it == o.end()) return -1;
    if (it->value().is_double()) return it->value().as_double();
    if (it->value().is_int64()) return static_cast<double>(it->value().as_int64());
    if (it->value().is_uint64()) return static_cast<double>(it->value().as_uint64());
    return -1;
  };
  if (str("cpu_model") != n.cpu_model || num("cpu_threads") != n.cpu_threads ||
      num("ram_bytes") != static_cast<double>(n.ram_bytes))
    return std::nullopt;
  double bw = num("ram_bandwidth_bytes_per_s");
  if (!(bw > 1e8 && bw < 1e14)) return std::nullopt;
  return bw;
}

void write_cache(const std::filesystem::path& file, const node& n, double bw) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  boost::json::object o;
  o["cpu_model"] = n.cpu_model;
  o["cpu_threads"] = n.cpu_threads;
  o["ram_bytes"] = n.ram_bytes;
  o["ram_bandwidth_bytes_per_s"] = bw;
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return;  // a cache that cannot be written is only slower next time
    out << boost::json::serialize(o) << "\n";
  }
  std::filesystem::rename(tmp, file, ec);
}

void match_gpus(std::vector<gpu>& gpus, const catalogue& cat, std::vector<std::string>& notes) {
  for (auto& g : gpus) {
    const gpu_spec* s = cat.match_reported(g.name, g.vram_bytes);
    if (!s) {
      notes.push_back(
          fmt::format("GPU {} '{}' is not in the catalogue ({}): its bandwidth and TFLOPS are unknown; "
                      "declare them in an inventory (vram_gb, bandwidth_gbs, tflops)",
                      g.index, g.name, cat.source));
      continue;
    }
    g.catalogue_id = s->id;
    g.bandwidth_bytes_per_s = s->bandwidth_bytes_per_s;
    g.fp16_tflops = s->fp16_tflops;
    g.generation = s->generation;
    if (g.vram_bytes == 0) {
      g.vram_bytes = s->vram_bytes;
      g.free_vram_bytes = s->vram_bytes;
    }
    if (g.pcie_gen == 0) g.pcie_gen = s->pcie_gen;
    if (g.pcie_lanes == 0) g.pcie_lanes = s->pcie_lanes;
  }
}

}  // namespace

system_access& real_system() {
  static posix_system s;
  return s;
}

result<discovery> discover_local(system_access& sys, const catalogue& cat, const discover_options& opt) {
  discovery d;
  node& n = d.local;
  n.name = "local";
  n.address = "127.0.0.1";

  auto cpu_text = sys.read_file("/proc/cpuinfo");
  if (!cpu_text) return make_error(fmt::format("cannot read /proc/cpuinfo: {}", cpu_text.err().message));
  auto cpu = parse_cpuinfo(*cpu_text);
  if (!cpu) return cpu.err();
  n.cpu_model = cpu->model;
  n.cpu_cores = cpu->cores;
  n.cpu_threads = cpu->threads;
  double fpc =
      cpu->flops_per_cycle_per_core > 0 ? cpu->flops_per_cycle_per_core : cat.cpu.flops_per_cycle_per_core;
  n.cpu_peak_flops = cpu->mhz > 0 ? n.cpu_cores * cpu->mhz * 1e6 * fpc : 0;
  if (n.cpu_peak_flops > 0) n.cpu_flops_source = "cpuinfo";
  if (const cpu_model_spec* known = cat.match_cpu(n.cpu_model)) {
    n.cpu_catalogue_id = known->id;
    if (n.cpu_peak_flops <= 0) {  // no clock in /proc/cpuinfo (Arm): the catalogue's figure
      n.cpu_peak_flops = std::min(n.cpu_cores > 0 ? n.cpu_cores : known->cores, known->cores) * known->ghz *
                         1e9 * known->flops_per_cycle;
      n.cpu_flops_source = "cpu catalogue " + known->id;
    }
  }

  auto mem_text = sys.read_file("/proc/meminfo");
  if (!mem_text) return make_error(fmt::format("cannot read /proc/meminfo: {}", mem_text.err().message));
  auto mem = parse_meminfo(*mem_text);
  if (!mem) return mem.err();
  n.ram_bytes = mem->total_bytes;
  n.ram_free_bytes = mem->available_bytes;

  std::vector<std::string> missing;
  auto nv = sys.run(nvidia_smi_argv());
  if (nv) {
    auto gpus = parse_nvidia_smi_csv(*nv);
    if (gpus) {
      for (auto& g : *gpus) n.gpus.push_back(std::move(g));
    } else {
      d.notes.push_back("ignoring nvidia-smi: " + gpus.err().message);
    }
  } else {
    missing.push_back(nv.err().message);
  }
  auto amd = sys.run(rocm_smi_argv());
  if (amd) {
    auto gpus = parse_rocm_smi_json(*amd);
    if (gpus) {
      int base = static_cast<int>(n.gpus.size());
      for (auto& g : *gpus) {
        g.index += base;
        n.gpus.push_back(std::move(g));
      }
    } else {
      d.notes.push_back("ignoring rocm-smi: " + gpus.err().message);
    }
  } else {
    missing.push_back(amd.err().message);
  }
  match_gpus(n.gpus, cat, d.notes);
  if (n.gpus.empty()) {
    std::string why;
    for (const auto& m : missing) {
      if (!why.empty()) why += "; ";
      why += m;
    }
    d.notes.push_back(fmt::format("no GPU found{}: this is a CPU-only node; models run from system RAM",
                                  why.empty() ? "" : " (" + why + ")"));
  }

  std::filesystem::path cache = opt.cache_file.empty() ? default_cache_file() : opt.cache_file;
  if (opt.measure_bandwidth) {
    std::optional<double> cached;
    if (opt.use_cache && !cache.empty()) cached = read_cache(cache, n);
    if (cached) {
      n.ram_bandwidth_bytes_per_s = *cached;
      n.ram_bandwidth_source = "cache";
    } else {
      double bw = opt.measure ? opt.measure() : measure_ram_bandwidth();
      if (bw > 0) {
        n.ram_bandwidth_bytes_per_s = bw;
        n.ram_bandwidth_source = "measured";
        if (!cache.empty()) write_cache(cache, n, bw);
      }
    }
  }
  const cpu_model_spec* known_cpu = cat.match_cpu(n.cpu_model);
  if (n.ram_bandwidth_bytes_per_s <= 0 && known_cpu) {
    n.ram_bandwidth_bytes_per_s = known_cpu->bandwidth_bytes_per_s;
    n.ram_bandwidth_source = "cpu catalogue " + known_cpu->id;
  }
  if (n.ram_bandwidth_bytes_per_s <= 0) {
    n.ram_bandwidth_bytes_per_s = cat.cpu.ram_bandwidth_bytes_per_s;
    n.ram_bandwidth_source = "catalogue";
  }
  return d;
}

inventory local_inventory(const node& n) {
  inventory inv;
  inv.source = "local";
  inv.nodes.push_back(n);
  for (const auto& g : n.gpus) inv.links.push_back(gpu_pcie_link(n.name, g));
  return inv;
}

}  // namespace agifarm::hw
