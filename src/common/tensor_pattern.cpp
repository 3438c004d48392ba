#include "common/tensor_pattern.hpp"

#include <fmt/format.h>

#include <boost/regex.hpp>
#include <regex>
#include <stdexcept>

namespace agifarm {

struct tensor_pattern::compiled {
  boost::regex re;
};

result<tensor_pattern> tensor_pattern::compile(std::string_view pattern) {
  std::string text(pattern);
  // libstdc++'s regex compiler reads a back-reference or {n,m} bound into a long without an overflow
  // check (undefined behaviour on "\\88888888888888888888"); no tensor pattern needs such a number.
  for (std::size_t i = 0, run = 0; i < text.size(); ++i) {
    run = (text[i] >= '0' && text[i] <= '9') ? run + 1 : 0;
    if (run > 9)
      return make_error(fmt::format("-ot pattern '{}' has a number of more than 9 digits", text), 2);
  }
  try {
    std::regex as_llama_cpp_reads_it(text);  // same acceptance as llama.cpp's -ot parsing
  } catch (const std::regex_error& e) {
    return make_error(fmt::format("-ot pattern '{}' is not a valid regex: {}", text, e.what()), 2);
  }
  tensor_pattern p;
  try {
    p.re_ = std::make_shared<const compiled>(compiled{boost::regex(text, boost::regex::ECMAScript)});
  } catch (const std::exception& e) {
    return make_error(fmt::format("-ot pattern '{}' is not a valid regex: {}", text, e.what()), 2);
  }
  p.text_ = std::move(text);
  return p;
}

result<bool> tensor_pattern::search(std::string_view name) const {
  try {
    return boost::regex_search(name.begin(), name.end(), re_->re);
  } catch (const std::exception&) {
    // boost::regex_error (error_complexity / error_stack): the matcher hit its bound
    return make_error(
        fmt::format("-ot pattern '{}' takes too long to match the tensor name '{}' (it backtracks "
                    "without bound; llama-server would hang on it too): write it without "
                    "repeated wildcards such as '.*.*' or nested repetition such as '(a*)*'",
                    text_, name),
        2);
  }
}

}  // namespace agifarm
