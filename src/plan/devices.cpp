#include "plan/devices.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace agifarm::plan {

std::vector<device_desc> rpc_devices(const std::vector<std::string>& endpoints) {
  std::vector<device_desc> out;
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    device_desc d;
    d.name = fmt::format("RPC{}", i);
    d.buffer_names = {fmt::format("RPC{}[{}]", i, endpoints[i]), fmt::format("RPC0[{}]", endpoints[i])};
    d.free_bytes = 24ull << 30;
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<device_desc> identical_devices(int n, std::uint64_t bytes) {
  std::vector<device_desc> out;
  for (int i = 0; i < n; ++i)
    out.push_back({fmt::format("Dev{}", i), {fmt::format("Dev{}", i)}, bytes, false});
  return out;
}

std::string_view backend_name(hw::gpu_vendor v) { return v == hw::gpu_vendor::amd ? "ROCm" : "CUDA"; }

std::vector<device_desc> gpu_devices(const std::vector<const hw::gpu*>& gpus) {
  std::vector<device_desc> out;
  int cuda = 0, rocm = 0;
  for (const hw::gpu* g : gpus) {
    device_desc d;
    d.name = fmt::format("{}{}", backend_name(g->vendor), g->vendor == hw::gpu_vendor::amd ? rocm++ : cuda++);
    d.buffer_names = {d.name};
    d.free_bytes = g->free_vram_bytes ? g->free_vram_bytes : g->vram_bytes;
    d.offloads_ops = true;
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<device_desc> node_devices(const hw::node& n, const std::vector<int>& gpu_indices) {
  std::vector<const hw::gpu*> gpus;
  for (const auto& g : n.gpus)
    if (gpu_indices.empty() ||
        std::find(gpu_indices.begin(), gpu_indices.end(), g.index) != gpu_indices.end())
      gpus.push_back(&g);
  return gpu_devices(gpus);
}

std::vector<device_desc> inventory_devices(const hw::inventory& inv) {
  std::vector<device_desc> out;
  for (const auto& n : inv.nodes) {
    auto d = node_devices(n);
    if (inv.nodes.size() > 1)
      for (auto& x : d) x.name = n.name + "/" + x.name;
    out.insert(out.end(), d.begin(), d.end());
  }
  return out;
}

}  // namespace agifarm::plan
