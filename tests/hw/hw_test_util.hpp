// Helpers for the hw tests: fixtures recorded in the tools' documented formats, the real catalogue,
// and a fake system_access that answers from a table.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "hw/hw.hpp"

namespace agifarm::hw::test {

inline std::string fixture(const std::string& name) {
  std::ifstream in(std::string(AGIFARM_SOURCE_DIR) + "/tests/hw/fixtures/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << name;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const catalogue& real_catalogue() {
  static const catalogue cat = [] {
    auto c = load_catalogue(std::string(AGIFARM_SOURCE_DIR) + "/data/gpus.yaml");
    if (!c) ADD_FAILURE() << c.err().message;
    return c ? *c : catalogue{};
  }();
  return cat;
}

// Answers run() by argv[0] and read_file() by path; anything else is "not found".
struct fake_system : system_access {
  std::map<std::string, std::string> tools;  // argv[0] -> stdout
  std::map<std::string, std::string> files;  // path -> contents
  std::vector<std::vector<std::string>> calls;
  result<std::string> run(const std::vector<std::string>& argv) override {
    calls.push_back(argv);
    auto it = tools.find(argv.at(0));
    if (it == tools.end()) return make_error(argv[0] + ": not found");
    return it->second;
  }
  result<std::string> read_file(const std::filesystem::path& p) override {
    auto it = files.find(p.string());
    if (it == files.end()) return make_error(p.string() + ": cannot open");
    return it->second;
  }
};

constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;
constexpr std::uint64_t k_mib = 1024ull * 1024ull;

}  // namespace agifarm::hw::test
