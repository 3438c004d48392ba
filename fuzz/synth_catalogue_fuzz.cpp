// libFuzzer target over the model catalogue parser (data/models.yaml): any text must give a catalogue
// or an error naming file:line:column, never a crash, a hang or an exception escaping. What parses is
// also laid out (its architecture family's tensor list and metadata, and the quantizer's choice for
// Q4_K_M), which must not fail for a validated entry.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "synth/arch.hpp"
#include "synth/quant_mix.hpp"
#include "synth/shape_catalogue.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::synth;
  if (size > 1 << 16) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = parse_model_catalogue(text, "fuzz.yaml");
  if (!r) {
    if (r.err().message.rfind("fuzz.yaml", 0) != 0) __builtin_trap();  // errors always name the file
    return 0;
  }
  std::size_t laid_out = 0;
  for (const auto& m : *r) {
    if (m.n_head % m.n_head_kv != 0 || m.id.empty()) __builtin_trap();  // validation held
    (void)find_model(*r, m.id);
    if (++laid_out > 4) continue;  // a few per input: 512 blocks each must stay within the time limit
    const arch_family* f = find_arch(m.arch);
    if (!f) __builtin_trap();  // only known architectures parse
    tensor_list t(m);
    f->tensors(m, t);
    const auto tensors = t.take();
    if (tensors.empty()) __builtin_trap();
    for (const auto& x : tensors)
      for (auto d : x.shape)
        if (d == 0) __builtin_trap();  // a validated entry has no empty tensor
    key_list kv(m);
    f->metadata(m, kv);
    const quant_model q{m.arch, m.block_count(), m.n_head, m.n_head_kv, m.n_expert};
    if (!choose_types(q, quant_mix::q4_k_m, tensors).ok()) __builtin_trap();
  }
  return 0;
}
