// devices: the devices llama.cpp would see, as the memory model describes them (device_desc), built
// from an inventory node, N identical devices, or the --rpc servers of a command line.
// Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "hw/hw.hpp"
#include "plan/memory_model.hpp"

namespace agifarm::plan {

// RPC0..RPCn for host:port entries, buffer names "RPC<i>[host:port]" as llama.cpp names them.
// Free memory is reported as equal (the default split is then even).
std::vector<device_desc> rpc_devices(const std::vector<std::string>& endpoints);
// N devices "Dev0".."DevN-1" with `bytes` each.
std::vector<device_desc> identical_devices(int n, std::uint64_t bytes);
// All GPUs of all nodes in order: CUDA<k> for NVIDIA, ROCm<k> for AMD (k counts per node and vendor).
std::vector<device_desc> inventory_devices(const hw::inventory& inv);
std::vector<device_desc> node_devices(const hw::node& n, const std::vector<int>& gpu_indices = {});
// llama.cpp's backend for a GPU vendor, the prefix of its device names: "ROCm" for AMD, else "CUDA".
std::string_view backend_name(hw::gpu_vendor v);
// The one builder behind the others: GPUs of one node in llama.cpp's order, named per backend as
// llama.cpp names them (CUDA0.., ROCm0.., counted apart), free memory as llama.cpp sees it (the
// discovered free VRAM, else the total), op offload on.
std::vector<device_desc> gpu_devices(const std::vector<const hw::gpu*>& gpus);

}  // namespace agifarm::plan
