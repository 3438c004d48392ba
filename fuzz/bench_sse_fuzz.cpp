// Fuzzes the bench's SSE stream parser and chunk reader (src/bench/sse.hpp): any bytes, split at
// fuzzer-chosen points, never crash, hang or grow past the line limit; events are the same however
// the bytes are split.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "bench/sse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t step = 1 + data[0] % 17;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  agifarm::bench::sse_parser whole(4096), split(4096);
  std::vector<std::string> a, b;
  bool ok_whole = whole.feed(in, a);
  bool ok_split = true;
  for (std::size_t i = 0; i < in.size(); i += step) ok_split = split.feed(in.substr(i, step), b) && ok_split;
  whole.finish(a);
  split.finish(b);
  if (ok_whole != ok_split) __builtin_trap();
  if (ok_whole && a != b) __builtin_trap();
  for (const auto& e : a) {
    if (e.size() > 4096) __builtin_trap();
    auto c = agifarm::bench::parse_chunk(e);
    if (c.has_text && c.text_bytes == 0) __builtin_trap();
  }
  agifarm::bench::parse_chunk(in);
  return 0;
}
