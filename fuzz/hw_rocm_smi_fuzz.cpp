// Fuzz target: the rocm-smi --json parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hw/hw.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::hw;
  auto r = parse_rocm_smi_json(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r.ok()) {
    if (r.err().message.empty()) __builtin_trap();
    return 0;
  }
  for (std::size_t i = 0; i < r->size(); ++i)
    if ((*r)[i].index != static_cast<int>(i) || (*r)[i].free_vram_bytes > (*r)[i].vram_bytes)
      __builtin_trap();
  return 0;
}
