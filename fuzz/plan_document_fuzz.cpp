// Fuzzes the plan JSON reader (what `emit` and `up` read): never a crash, and what parses re-serializes
// and parses again to the same structure. (Doubles are not compared: Boost.JSON 1.81's parser may
// differ from the shortest round-trip form in the last bit; regress-double-roundtrip.json.)
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "plan/plan_document.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = agifarm::plan::parse_plan_document(text);
  if (!doc) return 0;
  auto once = boost::json::serialize(agifarm::plan::to_json(*doc));
  auto again = agifarm::plan::parse_plan_document(once);
  if (!again) __builtin_trap();
  if (again->candidates.size() != doc->candidates.size() ||
      again->chosen.backends.size() != doc->chosen.backends.size() ||
      again->models.size() != doc->models.size() || again->roles.size() != doc->roles.size() ||
      again->inventory.nodes.size() != doc->inventory.nodes.size())
    __builtin_trap();
  for (std::size_t i = 0; i < doc->chosen.backends.size(); ++i)
    if (again->chosen.backends[i].args != doc->chosen.backends[i].args) __builtin_trap();
  return 0;
}
