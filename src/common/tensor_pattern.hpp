// tensor_pattern: an `-ot PATTERN=BUFFER` tensor-name pattern as llama.cpp reads it (ECMAScript,
// searched anywhere in the name), matched with a bound on the work.
//
// llama.cpp compiles the pattern with std::regex and calls std::regex_search, which backtracks without
// limit: ".*.*.*.*.*.*.*.*.*.*.*.*.*.*Z" runs for minutes on a 30-character tensor name, and "(a*)*"
// for longer than anyone waits. agifarm accepts exactly the patterns std::regex accepts (so it never
// plans with a rule llama-server would refuse), but matches with Boost.Regex, whose matcher gives up
// after O(N * S^2) steps (N: name length, S: pattern length) and says so. A pathological pattern is
// then an error that names it, not a hang.
//
// Values; thread-compatible (a compiled pattern may be shared by readers).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace agifarm {

class tensor_pattern {
 public:
  // Errors (code 2): not a valid ECMAScript regex, with std::regex's reason.
  static result<tensor_pattern> compile(std::string_view pattern);

  // True when the pattern occurs in `name`. Error (code 2) when matching would take more than the
  // bound: the pattern backtracks exponentially or with a high polynomial degree.
  result<bool> search(std::string_view name) const;

  const std::string& text() const { return text_; }

 private:
  struct compiled;
  std::string text_;
  std::shared_ptr<const compiled> re_;
};

}  // namespace agifarm
