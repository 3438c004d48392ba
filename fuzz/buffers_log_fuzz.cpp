// Fuzz target: llama-server's load log as agifarm reads its buffers (supervise/buffers_log). Any input
// gives a report; its devices are unique, "host" at most once and last, and complete needs a line.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "supervise/buffers_log.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = agifarm::supervise::parse_buffers_log(text);
  std::set<std::string> seen;
  for (std::size_t i = 0; i < r.devices.size(); ++i) {
    const auto& d = r.devices[i];
    if (d.device.empty() || !seen.insert(d.device).second) __builtin_trap();
    if (d.device == "host" && i + 1 != r.devices.size()) __builtin_trap();
    if (d.device != "host" && agifarm::supervise::is_host_buffer(d.device)) __builtin_trap();
  }
  if (r.complete && r.lines == 0) __builtin_trap();
  if (r.lines < 0 || (r.lines == 0 && !r.devices.empty())) __builtin_trap();
  return 0;
}
