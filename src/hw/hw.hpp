// hw: what the hardware is. Plain data describing GPUs, nodes (machines) and the links between them,
// the GPU catalogue (data/gpus.yaml), the inventory file (YAML, several machines) and discovery of the
// local machine (nvidia-smi, rocm-smi, /proc/cpuinfo, /proc/meminfo, a RAM-bandwidth measurement).
//
// Contract: every parser takes text (never a path) and returns result<T>; bad input gives an error
// naming the file and the place (file:line:column for YAML, line for CSV, JSON key for rocm-smi) and
// exit code 2, never a crash. load_* functions are thin wrappers that read a file first. All functions
// are thread-safe (no global state); measure_ram_bandwidth() uses threads internally and takes 0.3-2 s.
// Units: bytes, bytes per second, FLOP/s, seconds. A figure that is unknown is 0.
// The OS (running tools, reading /proc) is behind `system_access` so discovery is tested on fixtures.
#pragma once

#include <boost/json/fwd.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::hw {

enum class gpu_vendor { none, nvidia, amd };
std::string_view to_string(gpu_vendor v);  // "none" | "nvidia" | "amd"

// PCIe bandwidth of one direction for gen (1..6) x lanes, after line coding, in bytes/s
// (gen3 x16 = 15.75e9, gen4 x16 = 31.5e9). 0 for an unknown generation.
double pcie_bandwidth_bytes_per_s(int gen, int lanes);

struct gpu {
  std::string name;          // as reported ("NVIDIA GeForce RTX 3090") or declared ("rtx3090")
  std::string catalogue_id;  // "rtx3090"; empty when not in the catalogue (explicit figures)
  gpu_vendor vendor = gpu_vendor::none;
  int index = 0;  // position in its node, llama.cpp / CUDA_VISIBLE_DEVICES order
  std::uint64_t vram_bytes = 0;
  std::uint64_t free_vram_bytes = 0;  // discovered; for declared GPUs equal to vram_bytes
  double bandwidth_bytes_per_s = 0;   // memory bandwidth (vendor spec)
  double fp16_tflops = 0;             // dense FP16 tensor TFLOPS (vendor spec, see docs/hardware.md)
  std::string generation;  // catalogue generation ("ampere", "ada", ...): the speed model's efficiencies
  int pcie_gen = 0;        // link to the host: generation and lanes (0 = unknown)
  int pcie_lanes = 0;
};

struct node {
  std::string name = "local";
  std::string address = "127.0.0.1";
  std::vector<gpu> gpus;
  std::string cpu_model;
  int cpu_cores = 0;          // physical cores
  int cpu_threads = 0;        // logical CPUs
  double cpu_peak_flops = 0;  // rough FP32 SIMD peak (cores x GHz x FLOP/cycle from flags); 0 = unknown
  // Where cpu_peak_flops comes from: "declared" (inventory ghz), "cpuinfo", "cpu catalogue <id>", or
  // "" when unknown (the speed model then uses a default and plans say so).
  std::string cpu_flops_source;
  std::string cpu_catalogue_id;  // the data/cpus.yaml entry the CPU model matched, "" if none
  std::uint64_t ram_bytes = 0;
  std::uint64_t ram_free_bytes = 0;  // MemAvailable for a discovered node; = ram_bytes when declared
  double ram_bandwidth_bytes_per_s = 0;
  std::string ram_bandwidth_source;  // "measured" | "declared" | "cpu catalogue <id>" | "catalogue" (the
                                     // generic default of gpus.yaml) | "cache"
  // How `agifarm up` reaches this node (docs/multinode.md). A node without `ssh` is the machine `up`
  // runs on. address is where its backends listen (its private-network address).
  std::string ssh;           // "user@host[:port]"; "" = this machine
  std::string agifarm_path;  // the agifarm binary there ("" = `agifarm` on its PATH)
  std::string llama_bin;     // llama.cpp binaries there ("" = that machine's default)
  std::string state_dir;     // its node state directory ("" = its default, per node name)
  std::uint64_t total_vram_bytes() const;
};

enum class link_kind { pcie, nvlink, ethernet };
std::string_view to_string(link_kind k);

// A link either joins two nodes (ethernet) or sits inside one node (pcie between a GPU and the host,
// nvlink between GPUs). bandwidth_bytes_per_s is one direction.
struct link {
  link_kind kind = link_kind::ethernet;
  std::string node_a;  // ethernet: both ends; pcie / nvlink: the node, node_b == node_a
  std::string node_b;
  std::vector<int> gpus;  // nvlink: the GPU indices it joins (all pairs among them); pcie: the one GPU
  double bandwidth_bytes_per_s = 0;
  double latency_s = 0;  // one-way
  int pcie_gen = 0;      // pcie only
  int pcie_lanes = 0;
  double gbit_per_s() const { return bandwidth_bytes_per_s * 8 / 1e9; }
};

// Defaults used where an inventory declares nothing.
inline constexpr double k_default_ethernet_gbit = 1.0;  // between nodes
inline constexpr double k_default_ethernet_latency_s = 0.2e-3;
inline constexpr double k_default_pcie_latency_s = 5e-6;
inline constexpr double k_default_nvlink_latency_s = 2e-6;
inline constexpr double k_loopback_bandwidth_bytes_per_s = 10e9;  // a node to itself (RPC on loopback)

// The PCIe link of one GPU to its host, from the GPU's generation and lanes.
link gpu_pcie_link(const std::string& node_name, const gpu& g);

struct inventory {
  std::vector<node> nodes;
  std::vector<link> links;  // declared ethernet + nvlink links, and one pcie link per GPU
  std::string source;       // file it came from, or "local" for discovery

  const node* find_node(std::string_view name) const;
  // The link between two nodes: the declared ethernet link (either order), else the inventory's
  // default (1 Gbit/s, 0.2 ms unless the file sets `default_link`); a == b gives loopback.
  link between(std::string_view a, std::string_view b) const;
  // The path between two GPUs of one node: the nvlink joining both if declared, else PCIe through the
  // host at the slower of the two GPUs' links. Indices out of range give a default PCIe gen4 x16 link.
  link between_gpus(std::string_view node_name, int gpu_a, int gpu_b) const;
  int gpu_count() const;
  link default_link;  // kind ethernet, filled by the parser / constructor default
  inventory();
};

// ---- the catalogue (data/gpus.yaml) -------------------------------------------------------------
struct gpu_spec {
  std::string id;            // "rtx3090"
  std::string display_name;  // "NVIDIA GeForce RTX 3090"
  gpu_vendor vendor = gpu_vendor::nvidia;
  std::uint64_t vram_bytes = 0;
  double bandwidth_bytes_per_s = 0;
  double fp16_tflops = 0;  // dense FP16 tensor
  std::string generation;  // "ampere", "ada", "rdna3", "apple", ... ("" = not stated)
  int pcie_gen = 0;        // typical host link
  int pcie_lanes = 16;
  std::vector<std::string> match;    // normalized substrings of reported names ("rtx3090")
  std::vector<std::string> aliases;  // other names accepted in an inventory ("a6000")
};
struct cpu_spec {                        // the `cpu` entry: fallbacks for CPU-only nodes
  double ram_bandwidth_bytes_per_s = 0;  // used when not measured or declared
  double flops_per_cycle_per_core = 0;   // FP32 SIMD FLOP/cycle/core when flags are unknown
};
// One CPU of the CPU catalogue (data/cpus.yaml): published figures of a common CPU model.
struct cpu_model_spec {
  std::string id;  // "ryzen9-5900x"
  std::string display_name;
  std::vector<std::string> match;  // normalized substrings of model strings ("ryzen95900x")
  int cores = 0;
  double ghz = 0;                    // all-core base clock
  double flops_per_cycle = 0;        // FP32 per core per cycle (widest FMA path)
  std::string memory;                // "2 x DDR4-3200"
  double bandwidth_bytes_per_s = 0;  // theoretical peak
  double peak_flops() const { return cores * ghz * 1e9 * flops_per_cycle; }
};
struct catalogue {
  std::vector<gpu_spec> gpus;
  cpu_spec cpu;
  std::vector<cpu_model_spec> cpus;  // data/cpus.yaml (load_default_catalogue reads it when present)
  std::string source;                // path it was read from
  // By id or alias; case, spaces, '-' and '_' are ignored ("RTX 3090" finds rtx3090).
  const gpu_spec* find(std::string_view id) const;
  // Best entry for a reported name (nvidia-smi / rocm-smi): longest matching `match` substring,
  // ties broken by the VRAM nearest vram_bytes (A100 40 GB vs 80 GB). nullptr when none matches.
  const gpu_spec* match_reported(std::string_view reported_name, std::uint64_t vram_bytes) const;
  // Up to n catalogue ids nearest to `name` by edit distance (for "did you mean").
  std::vector<std::string> nearest(std::string_view name, std::size_t n = 3) const;
  // The CPU catalogue entry a model string names (longest `match` substring), or nullptr.
  const cpu_model_spec* match_cpu(std::string_view model) const;
};

result<catalogue> parse_catalogue(std::string_view yaml_text, std::string_view file_name);
result<catalogue> load_catalogue(const std::filesystem::path& file);
// Where data files are: $AGIFARM_DATA_DIR, else <exe dir>/../share/agifarm, else the source tree's
// data/ (compile-time AGIFARM_DATA_DIR). The first that holds gpus.yaml wins.
std::filesystem::path data_dir();
result<catalogue> load_default_catalogue();  // data_dir() / "gpus.yaml" (+ cpus.yaml when present)
// The CPU catalogue (data/cpus.yaml, format in its header). Errors name file:line:column (exit 2).
result<std::vector<cpu_model_spec>> parse_cpu_catalogue(std::string_view yaml_text,
                                                        std::string_view file_name);

// ---- the inventory file --------------------------------------------------------------------------
// Format: docs/hardware.md; examples: docs/examples/*.yaml. Errors: "FILE:LINE:COL: key 'x': ...".
result<inventory> parse_inventory(std::string_view yaml_text, std::string_view file_name,
                                  const catalogue& cat);
result<inventory> load_inventory(const std::filesystem::path& file, const catalogue& cat);

// ---- parsers of tool output (public for tests and fuzzing) ---------------------------------------
// The exact query discovery runs:
//   nvidia-smi --query-gpu=index,name,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max
//              --format=csv,noheader,nounits
// Memory in MiB; "[N/A]" / "[Not Supported]" fields become 0. GPUs are not yet matched to the catalogue.
std::vector<std::string> nvidia_smi_argv();
result<std::vector<gpu>> parse_nvidia_smi_csv(std::string_view text);
// rocm-smi --showproductname --showmeminfo vram --json : {"card0": {"Card series": ..., "VRAM Total
// Memory (B)": "...", "VRAM Total Used Memory (B)": "..."}, ...}
std::vector<std::string> rocm_smi_argv();
result<std::vector<gpu>> parse_rocm_smi_json(std::string_view text);

struct cpu_info {
  std::string model;
  int cores = 0;  // physical cores: distinct (physical id, core id), else "cpu cores" x sockets, else threads
  int threads = 0;                      // "processor" entries
  double mhz = 0;                       // highest "cpu MHz" seen (0 if absent, e.g. on ARM)
  double flops_per_cycle_per_core = 0;  // from flags: avx512f 64, avx2+fma 32, avx 16, sse2 8, else 0
};
result<cpu_info> parse_cpuinfo(std::string_view text);
struct mem_info {
  std::uint64_t total_bytes = 0;
  std::uint64_t available_bytes = 0;  // MemAvailable (MemFree+Buffers+Cached on old kernels)
};
result<mem_info> parse_meminfo(std::string_view text);

// ---- discovery of this machine ------------------------------------------------------------------
// The OS as discovery sees it. run() returns the tool's stdout, or an error when it is not installed
// or exits non-zero.
struct system_access {
  virtual ~system_access() = default;
  virtual result<std::string> run(const std::vector<std::string>& argv) = 0;
  virtual result<std::string> read_file(const std::filesystem::path& path) = 0;
};
// The real one: runs tools via PATH (posix_spawnp, stdout captured, 10 s deadline), reads real files.
system_access& real_system();

struct discover_options {
  bool measure_bandwidth = true;     // measure RAM bandwidth (else catalogue fallback)
  bool use_cache = true;             // read/write cache_file for the measured bandwidth
  std::filesystem::path cache_file;  // empty: $XDG_CACHE_HOME or ~/.cache, /agifarm/hw.json
  std::function<double()> measure;   // empty: measure_ram_bandwidth(); tests inject a fake
};
struct discovery {
  node local;  // name "local", address 127.0.0.1
  std::vector<std::string>
      notes;  // human notes: "no GPU found (nvidia-smi: not found; ...)", unmatched names
};
result<discovery> discover_local(system_access& sys, const catalogue& cat, const discover_options& opt = {});
// Wraps one discovered node as an inventory (source "local").
inventory local_inventory(const node& n);

// Multi-threaded sequential read over a buffer far beyond the caches (>= 256 MiB or 4x the L3),
// best of several passes: ~0.5 s on an idle machine, up to ~2 s when the CPUs are busy (which also
// lowers the figure; measure on an idle machine). Returns bytes/s, 0 if the buffer cannot be allocated.
double measure_ram_bandwidth(int threads = 0 /* 0: hardware_concurrency */);

// ---- output --------------------------------------------------------------------------------------
boost::json::object to_json(const gpu& g);
boost::json::object to_json(const node& n);
boost::json::object to_json(const link& l);
boost::json::object to_json(const inventory& inv);
std::string format_table(const inventory& inv);  // human-readable, one block per node

}  // namespace agifarm::hw
