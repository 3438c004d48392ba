// libFuzzer target over the model catalogue parser (data/models.yaml): any text must give a catalogue
// or an error naming file:line:column, never a crash, a hang or an exception escaping. What parses is
// also laid out (tensor list and quant choice), which must not fail for a validated entry.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "synth/shape_catalogue.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 1 << 16) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = agifarm::synth::parse_model_catalogue(text, "fuzz.yaml");
  if (!r) {
    if (r.err().message.rfind("fuzz.yaml", 0) != 0) __builtin_trap();  // errors always name the file
    return 0;
  }
  for (const auto& m : *r) {
    if (m.n_head % m.n_head_kv != 0 || m.id.empty()) __builtin_trap();  // validation held
    (void)agifarm::synth::find_model(*r, m.id);
  }
  return 0;
}
