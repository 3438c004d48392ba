// libFuzzer target over the measurements parser (data/gpu_measurements.yaml, `agifarm calibrate
// --measurements F`): any text gives rows or an error naming the file, never a crash, a hang or an
// exception escaping; what parses keeps its invariants (unique ids, one machine per GPU).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>

#include "calibrate/measurements.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::calibrate;
  if (size > 1 << 16) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = parse_measurements(text, "fuzz.yaml");
  if (!r) {
    if (r.err().message.rfind("fuzz.yaml", 0) != 0) __builtin_trap();  // errors always name the file
    return 0;
  }
  std::set<std::string> ids;
  for (const auto& m : *r) {
    if (m.id.empty() || !ids.insert(m.id).second) __builtin_trap();
    if (m.prefill_tps < 0 || m.decode_tps < 0) __builtin_trap();
    if (m.calib && m.calib->skip.empty()) {
      if (m.calib->gpus.empty()) __builtin_trap();
      if (!m.calib->nodes.empty() && m.calib->nodes.size() != m.calib->gpus.size()) __builtin_trap();
    }
  }
  return 0;
}
