// Internal to hw: helpers for reading YAML with errors that name file:line:column and the key.
// Every function throws yaml_error; the public parsers catch it at their edge and return result<T>.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

namespace agifarm::hw::detail {

struct yaml_error {
  std::string message;
};

// yaml-cpp throws InvalidNode when a missing key's node is asked its type: ask through these.
inline bool is_map(const YAML::Node& n) { return n.IsDefined() && n.IsMap(); }
inline bool is_seq(const YAML::Node& n) { return n.IsDefined() && n.IsSequence(); }
inline bool is_scalar(const YAML::Node& n) { return n.IsDefined() && n.IsScalar(); }

class yaml_reader {
 public:
  explicit yaml_reader(std::string_view file) : file_(file) {}

  std::string where(const YAML::Node& n, const YAML::Mark& fallback = YAML::Mark()) const {
    YAML::Mark m = n.IsDefined() ? n.Mark() : fallback;
    if (m.line < 0) m = fallback;
    if (m.line < 0) return file_;
    return fmt::format("{}:{}:{}", file_, m.line + 1, m.column + 1);
  }
  [[noreturn]] void fail(const YAML::Node& n, std::string_view key, std::string_view msg,
                         const YAML::Mark& fallback = YAML::Mark()) const {
    if (key.empty()) throw yaml_error{fmt::format("{}: {}", where(n, fallback), msg)};
    throw yaml_error{fmt::format("{}: key '{}': {}", where(n, fallback), key, msg)};
  }

  // A map's keys must be among `allowed`.
  void check_keys(const YAML::Node& map, std::string_view what,
                  std::initializer_list<std::string_view> allowed) const {
    if (!is_map(map)) fail(map, "", fmt::format("{} must be a mapping", what));
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!is_scalar(it->first)) fail(it->first, "", fmt::format("{}: keys must be plain names", what));
      const std::string& k = it->first.Scalar();
      bool ok = false;
      for (auto a : allowed) ok = ok || k == a;
      if (!ok) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        fail(it->first, k, fmt::format("unknown key in {} (expected one of: {})", what, list));
      }
    }
  }

  std::string str(const YAML::Node& map, std::string_view key) const {
    YAML::Node n = map[std::string(key)];
    if (!is_scalar(n)) fail(n.IsDefined() ? n : map, key, "must be a string");
    return n.Scalar();
  }
  double number(const YAML::Node& map, std::string_view key, double lo, double hi) const {
    YAML::Node n = map[std::string(key)];
    if (!is_scalar(n)) fail(n.IsDefined() ? n : map, key, "must be a number");
    double v = 0;
    try {
      v = n.as<double>();
    } catch (const YAML::Exception&) {
      fail(n, key, fmt::format("'{}' is not a number", n.Scalar()));
    }
    if (!std::isfinite(v) || v < lo || v > hi)
      fail(n, key, fmt::format("{} is out of range [{}, {}]", n.Scalar(), lo, hi));
    return v;
  }
  int integer(const YAML::Node& map, std::string_view key, int lo, int hi) const {
    YAML::Node n = map[std::string(key)];
    double v = number(map, key, lo, hi);
    if (v != std::floor(v)) fail(n, key, fmt::format("'{}' must be a whole number", n.Scalar()));
    return static_cast<int>(v);
  }
  bool has(const YAML::Node& map, std::string_view key) const {
    return is_map(map) && map[std::string(key)].IsDefined() && !map[std::string(key)].IsNull();
  }

 private:
  std::string file_;
};

// Loads a document; parse errors become yaml_error with file:line:column.
inline YAML::Node load_yaml(std::string_view text, std::string_view file) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw yaml_error{fmt::format("{}:{}:{}: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg)};
  }
}

}  // namespace agifarm::hw::detail
