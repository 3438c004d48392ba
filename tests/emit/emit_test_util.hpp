// Helpers for the emit tests: the four plan fixtures (tests/emit/plans/*.json, written by
// make_plans.py in the plan format of docs/plan-format.md) and file reading.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "emit/emit.hpp"

namespace agifarm::emit::test {

inline const std::vector<std::string>& plan_names() {
  static const std::vector<std::string> names{"one-gpu", "two-3090", "eight-gpu", "three-nodes"};
  return names;
}

// The backend key of the golden files: fixed so they compare byte for byte, and visibly not a secret.
inline constexpr const char* k_golden_backend_key = "golden-test-key-not-a-secret-0123456789";

inline std::string source_path(const std::string& rel) { return std::string(AGIFARM_SOURCE_DIR) + "/" + rel; }

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline emit_input load_plan(const std::string& name) {
  auto in = input_from_plan_text(read_text(source_path("tests/emit/plans/" + name + ".json")));
  EXPECT_TRUE(in.ok()) << name << ": " << (in.ok() ? "" : in.err().message);
  return in.ok() ? *in : emit_input{};
}

}  // namespace agifarm::emit::test
