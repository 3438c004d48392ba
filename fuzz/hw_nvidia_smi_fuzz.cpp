// Fuzz target: the nvidia-smi CSV parser, then catalogue matching of whatever names it returns.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hw/hw.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::hw;
  auto r = parse_nvidia_smi_csv(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r.ok()) {
    if (r.err().message.empty()) __builtin_trap();
    return 0;
  }
  for (const auto& g : *r)
    if (g.free_vram_bytes > g.vram_bytes) __builtin_trap();
  return 0;
}
