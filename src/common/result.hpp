// result<T>: the error-as-value type used at every module boundary of agifarm.
//
// A result holds either a T or an `error` (a message that names the thing and the place, plus the
// process exit code a CLI should use for it). No exception crosses a module boundary; code inside a
// module may throw and convert at its edge. Values are plain and copyable; not thread-safe beyond that.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace agifarm {

struct error {
  std::string message;
  int exit_code = 1;  // 2: bad input file, 3: no feasible plan; see docs/cli.md
};

inline error make_error(std::string message, int exit_code = 1) {
  return error{std::move(message), exit_code};
}

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  result(error e) : v_(std::move(e)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const error& err() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, error> v_;
};

// status: a result with no value.
class [[nodiscard]] status {
 public:
  status() = default;
  status(error e) : e_(std::move(e)), ok_(false) {}  // NOLINT
  static status success() { return {}; }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const error& err() const {
    assert(!ok_);
    return e_;
  }

 private:
  error e_;
  bool ok_ = true;
};

}  // namespace agifarm
