// Fuzzes the -ot rule merging of `agifarm emit` (emit/ot_rules.hpp) with arbitrary argument lists:
// one argument per input line. It must never crash, and a rewrite must leave no ',' inside a pattern
// and keep every non -ot argument in order.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/ot_rules.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> args;
  std::string cur;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(data[i]);
    }
  }
  args.push_back(cur);
  auto merged = agifarm::merge_override_args(args);
  if (merged == args) return 0;
  std::vector<std::string> rest_before, rest_after;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "-ot" || args[i] == "--override-tensor") && i + 1 < args.size())
      ++i;
    else
      rest_before.push_back(args[i]);
  }
  for (std::size_t i = 0; i < merged.size(); ++i) {
    if (merged[i] == "-ot" && i + 1 < merged.size()) {
      const std::string& v = merged[++i];
      if (v.find(',') != std::string::npos) __builtin_trap();
    } else {
      rest_after.push_back(merged[i]);
    }
  }
  if (rest_before != rest_after) __builtin_trap();
  (void)agifarm::numbers_regex({static_cast<int>(size), static_cast<int>(size / 2)});
  return 0;
}
