// Fuzz target: the farm file parser (YAML -> farm_file, including the gateway's keys). Any input must
// give a value or an error naming file:line:column, never a crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "farm/farm_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto f = agifarm::farm::parse_farm_file(text, "fuzz.yaml", "/base", "/home/u");
  if (!f.ok() && f.err().message.empty()) __builtin_trap();  // an error must say something
  if (f.ok()) {
    // On-demand keys: only on on-demand models, durations finite and non-negative.
    for (const auto& m : f->models)
      if (!(m.ttl_s >= 0) || (!m.on_demand && m.pin)) __builtin_trap();
    if (!(f->on_demand.batch_ms >= 0) || !(f->on_demand.load_timeout_s >= 1)) __builtin_trap();
  }
  (void)agifarm::farm::parse_duration_s(text.substr(0, 40));
  return 0;
}
