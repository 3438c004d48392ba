// Fuzz target: llama-fit-params' output as agifarm reads it (a memory breakdown table among log
// lines). The first byte picks how many RPC devices were asked for. Any input must give a breakdown or
// an error that says something; a breakdown's totals must add up.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fit/fit.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int n_devices = data[0] % 5;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto r = agifarm::fit::parse_fit_output(text, n_devices);
  if (!r.ok()) {
    if (r.err().message.empty()) __builtin_trap();
    return 0;
  }
  if (static_cast<int>(r->devices.size()) != n_devices) __builtin_trap();
  for (const auto& d : r->devices)
    if (d.total_bytes != d.model_bytes + d.context_bytes + d.compute_bytes) __builtin_trap();
  return 0;
}
