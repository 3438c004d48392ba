// json_reader: reads the fields of the plan's JSON (plan_document.cpp, deployment.cpp), remembering the
// path of the first error so messages say where the file broke ("plan JSON at deployment.backends[0].port:
// ..."). Internal to plan/. Not thread-safe (one reader per parse).
#pragma once

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "plan/deployment.hpp"

namespace agifarm::plan::detail {

namespace json = boost::json;

struct reader {
  std::string err;
  bool failed() const { return !err.empty(); }
  void fail(const std::string& path, const std::string& what) {
    if (err.empty())
      err = fmt::format("plan JSON at {}: {}", path.starts_with('.') ? path.substr(1) : path, what);
  }
  const json::object* object(const json::value& v, const std::string& path) {
    if (auto* o = v.if_object()) return o;
    fail(path, "expected an object");
    return nullptr;
  }
  const json::array* array(const json::object& o, const char* key, const std::string& path, bool required) {
    auto* v = o.if_contains(key);
    if (!v) {
      if (required) fail(path + "." + key, "missing");
      return nullptr;
    }
    if (auto* a = v->if_array()) return a;
    fail(path + "." + key, "expected an array");
    return nullptr;
  }
  std::string str(const json::object& o, const char* key, const std::string& path, bool required = false) {
    auto* v = o.if_contains(key);
    if (!v) {
      if (required) fail(path + "." + key, "missing");
      return {};
    }
    if (auto* s = v->if_string()) return std::string(*s);
    fail(path + "." + key, "expected a string");
    return {};
  }
  std::uint64_t u64(const json::object& o, const char* key, const std::string& path) {
    auto* v = o.if_contains(key);
    if (!v) return 0;
    if (auto* u = v->if_uint64()) return *u;
    if (auto* i = v->if_int64()) {
      if (*i >= 0) return static_cast<std::uint64_t>(*i);
      fail(path + "." + key, "must not be negative");
      return 0;
    }
    fail(path + "." + key, "expected a non-negative integer");
    return 0;
  }
  int i32(const json::object& o, const char* key, const std::string& path, int dflt = 0) {
    auto* v = o.if_contains(key);
    if (!v) return dflt;
    std::int64_t x = 0;
    if (auto* i = v->if_int64())
      x = *i;
    else if (auto* u = v->if_uint64(); u && *u <= static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
      x = static_cast<std::int64_t>(*u);
    else {
      fail(path + "." + key, "expected an integer");
      return dflt;
    }
    if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) {
      fail(path + "." + key, "integer out of range");
      return dflt;
    }
    return static_cast<int>(x);
  }
  double num(const json::object& o, const char* key, const std::string& path) {
    auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_number()) {
      // 1e400 parses as infinity, which JSON cannot carry back out.
      double d = v->to_number<double>();
      if (std::isfinite(d)) return d;
    }
    fail(path + "." + key, "expected a finite number");
    return 0;
  }
  bool boolean(const json::object& o, const char* key, const std::string& path, bool dflt) {
    auto* v = o.if_contains(key);
    if (!v) return dflt;
    if (auto* b = v->if_bool()) return *b;
    fail(path + "." + key, "expected true or false");
    return dflt;
  }
  std::vector<std::string> strs(const json::object& o, const char* key, const std::string& path) {
    std::vector<std::string> out;
    auto* a = array(o, key, path, false);
    for (std::size_t i = 0; a && i < a->size(); ++i) {
      if (auto* s = (*a)[i].if_string())
        out.emplace_back(*s);
      else
        fail(fmt::format("{}.{}[{}]", path, key, i), "expected a string");
    }
    return out;
  }
  std::vector<int> ints(const json::object& o, const char* key, const std::string& path) {
    std::vector<int> out;
    auto* a = array(o, key, path, false);
    for (std::size_t i = 0; a && i < a->size(); ++i) {
      const auto& x = (*a)[i];
      if (auto* v = x.if_int64();
          v && *v >= std::numeric_limits<int>::min() && *v <= std::numeric_limits<int>::max())
        out.push_back(static_cast<int>(*v));
      else if (auto* u = x.if_uint64();
               u && *u <= static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
        out.push_back(static_cast<int>(*u));
      else
        fail(fmt::format("{}.{}[{}]", path, key, i), "expected an integer");
    }
    return out;
  }
  device_memory memory(const json::value& v, const std::string& path) {
    device_memory m;
    auto* o = object(v, path);
    if (!o) return m;
    m.name = str(*o, "name", path);
    m.model_bytes = u64(*o, "model_bytes", path);
    m.context_bytes = u64(*o, "context_bytes", path);
    m.compute_bytes = u64(*o, "compute_bytes", path);
    m.total_bytes = u64(*o, "total_bytes", path);
    return m;
  }
  // Calls f(object, path) for each element of the array `key`.
  template <class F>
  void each(const json::object& o, const char* key, const std::string& path, bool required, F&& f) {
    auto* a = array(o, key, path, required);
    for (std::size_t i = 0; a && i < a->size() && !failed(); ++i) {
      std::string p = fmt::format("{}{}{}[{}]", path, path.empty() ? "" : ".", key, i);
      if (auto* e = object((*a)[i], p)) f(*e, p);
    }
  }
};

json::object to_json(const device_memory& m);

}  // namespace agifarm::plan::detail
