// Fuzz target: the /proc/cpuinfo and /proc/meminfo parsers.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hw/hw.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::hw;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = parse_cpuinfo(text);
  if (c.ok() && (c->cores < 1 || c->cores > c->threads)) __builtin_trap();
  auto m = parse_meminfo(text);
  if (m.ok() && m->available_bytes > m->total_bytes) __builtin_trap();
  return 0;
}
