// Fuzz target: the inventory and catalogue YAML parsers, plus everything that reads an inventory
// (link lookups, JSON, the table). Any input gives a value or an error naming file:line:column.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hw/hw.hpp"

namespace {
const agifarm::hw::catalogue& cat() {
  static const agifarm::hw::catalogue c = [] {
    auto r = agifarm::hw::load_catalogue(AGIFARM_CATALOGUE_FILE);
    if (!r) __builtin_trap();
    return *r;
  }();
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::hw;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto inv = parse_inventory(text, "fuzz.yaml", cat());
  if (!inv.ok()) {
    if (inv.err().message.rfind("fuzz.yaml", 0) != 0) __builtin_trap();  // errors name the file
  } else {
    const inventory& i = *inv;
    for (const auto& a : i.nodes) {
      for (const auto& b : i.nodes) (void)i.between(a.name, b.name);
      for (int x = -1; x <= static_cast<int>(a.gpus.size()); ++x) (void)i.between_gpus(a.name, x, 0);
    }
    (void)boost::json::serialize(to_json(i));
    (void)format_table(i);
  }
  auto c = parse_catalogue(text, "fuzz.yaml");
  if (c.ok()) {
    (void)c->nearest(text.substr(0, 64));
    (void)c->match_reported(text.substr(0, 128), 24ull << 30);
  } else if (c.err().message.empty()) {
    __builtin_trap();
  }
  // the CPU catalogue (data/cpus.yaml): entries or an error naming the file; lookups never fail
  auto cpus = parse_cpu_catalogue(text, "fuzz.yaml");
  if (cpus.ok()) {
    catalogue with;
    with.cpus = *cpus;
    for (const auto& s : with.cpus)
      if (s.match.empty() || s.cores < 1 || s.peak_flops() <= 0) __builtin_trap();
    (void)with.match_cpu(text.substr(0, 128));
  } else if (cpus.err().message.rfind("fuzz.yaml", 0) != 0) {
    __builtin_trap();
  }
  return 0;
}
