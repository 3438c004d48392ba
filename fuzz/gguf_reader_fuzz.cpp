// libFuzzer target over the GGUF reader: any bytes must give a value or an error, never a crash,
// an out-of-bounds read or a huge allocation. Also exercises summarize() on what parses.
#include <cstddef>
#include <cstdint>

#include "gguf/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agifarm::gguf;
  auto bytes = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size);
  for (std::uint64_t max_array : {std::uint64_t{0}, std::uint64_t{1} << 20}) {
    read_options opt;
    opt.max_array_elements = max_array;
    auto f = parse(bytes, "fuzz.gguf", opt);
    if (!f) continue;
    model m;
    m.parts.push_back(std::move(*f));
    auto s = summarize(m);
    (void)s;
    for (const auto* t : m.tensors()) (void)classify(t->name), (void)block_index(t->name);
  }
  return 0;
}
