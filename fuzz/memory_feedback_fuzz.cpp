// Fuzz target: the farm's measured-memory file (<state_dir>/measured-memory.json, farm/memory_feedback) and
// the margin rule fed from it. Any input parses or gives an error naming the file; what parses writes back to
// text that parses to the same observations; the rule's GPU margins stay within floor and cap.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "farm/memory_feedback.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::farm;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = parse_memory_feedback(text, "memory.json");
  if (!r) {
    if (r.err().message.rfind("memory.json", 0) != 0) __builtin_trap();  // errors name the file
    return 0;
  }
  std::vector<model_ref> models;
  for (const auto& o : r->observations) {
    if (o.model.empty() || o.device_kind.empty()) __builtin_trap();
    models.push_back({o.model, o.model_file});
  }
  auto again = parse_memory_feedback(to_json_text(*r), "again");
  if (!again || again->observations.size() != r->observations.size()) __builtin_trap();
  for (std::size_t i = 0; i < r->observations.size(); ++i) {
    const auto& a = r->observations[i];
    const auto& b = again->observations[i];
    if (a.model != b.model || a.model_file != b.model_file || a.device_kind != b.device_kind ||
        a.predicted_bytes != b.predicted_bytes || a.measured_bytes != b.measured_bytes || a.wall != b.wall)
      __builtin_trap();
  }
  const margin_rule rule;
  for (const auto& k : margins_from(*r, models, 4ull << 30, rule)) {
    if (k.used.empty()) __builtin_trap();
    if (k.device_kind != "host" && (k.margin_bytes < rule.floor_bytes || k.margin_bytes > rule.cap_bytes))
      __builtin_trap();
    if (k.device_kind == "host" &&
        (k.margin_bytes < (4ull << 30) || k.margin_bytes > (4ull << 30) + rule.cap_bytes))
      __builtin_trap();
  }
  return 0;
}
