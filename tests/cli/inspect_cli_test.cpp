// The inspect command end to end: JSON fields, and bad files → exit 2 with file and byte offset.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>

#include "support/support.hpp"

namespace agifarm {
namespace {

TEST(inspect_cli, json_has_every_documented_field) {
  auto r = test::run({test::agifarm_cli(), "inspect", "--json", test::tiny_model("qwen3moe")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = boost::json::parse(r.output).as_object();
  for (const char* k : {"file", "architecture", "n_layers", "n_embd", "n_head", "n_head_kv", "key_length",
                        "value_length", "context_length", "n_vocab", "n_experts", "n_experts_used",
                        "n_params", "file_bytes", "tensor_bytes_by_class", "bytes_by_type"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["architecture"].as_string(), "qwen3moe");
  EXPECT_EQ(j["n_experts"].as_int64(), 8);
  EXPECT_EQ(j["n_vocab"].as_int64(), 151936);
  EXPECT_GT(j["tensor_bytes_by_class"].at("ffn_expert").as_int64(), 0);
}

TEST(inspect_cli, bad_files_exit_2_naming_file_and_offset) {
  std::string dir = test::temp_dir("inspect-bad");
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
    return dir + "/" + name;
  };
  std::string good;
  {
    std::ifstream f(test::tiny_model("qwen3"), std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(f), {});
  }
  struct bad_case {
    std::string file, expect;
  };
  std::vector<bad_case> cases = {
      {write("truncated.gguf", good.substr(0, 5000)), "truncated"},
      {write("magic.gguf", "GGML" + good.substr(4, 100)), "wrong magic"},
      {write("empty.gguf", ""), "empty"},
      {write("shortdata.gguf", good.substr(0, good.size() - 100)), "extends past the end"},
      {dir + "/missing.gguf", "cannot open"},
  };
  for (const auto& c : cases) {
    auto r = test::run({test::agifarm_cli(), "inspect", c.file});
    EXPECT_EQ(r.exit_code, 2) << c.file << "\n" << r.output;
    EXPECT_NE(r.output.find(c.file), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << r.output;
    if (c.expect != "cannot open") {
      EXPECT_NE(r.output.find("at byte"), std::string::npos) << r.output;
    }
  }
}

}  // namespace
}  // namespace agifarm
