// Small formatting helpers shared by the CLI and the modules that print for people. Pure functions.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace agifarm {

// 1536 -> "1.5 KiB" (binary units; bytes below 1 KiB as "N B").
inline std::string human_bytes(std::uint64_t bytes, int decimals = 1) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.{}f} {}", v, decimals, units[u]);
}

}  // namespace agifarm
