#include "common/tensor_pattern.hpp"

#include <gtest/gtest.h>

#include <string>

namespace agifarm {
namespace {

bool matches(const std::string& pattern, const std::string& name) {
  auto p = tensor_pattern::compile(pattern);
  EXPECT_TRUE(p) << pattern;
  if (!p) return false;
  auto r = p->search(name);
  EXPECT_TRUE(r) << pattern << " on " << name;
  return r && *r;
}

TEST(tensor_pattern, searches_anywhere_in_the_name_as_llama_cpp_does) {
  EXPECT_TRUE(matches("exps", "blk.3.ffn_up_exps.weight"));
  EXPECT_TRUE(matches(R"(blk\.(1[0-9]|2[0-3])\.ffn_(up|down|gate)_exps)", "blk.17.ffn_down_exps.weight"));
  EXPECT_FALSE(matches(R"(blk\.(1[0-9]|2[0-3])\.ffn_(up|down|gate)_exps)", "blk.7.ffn_down_exps.weight"));
  EXPECT_FALSE(matches(R"(^exps)", "blk.3.ffn_up_exps.weight"));
  EXPECT_TRUE(matches(R"(\.ffn_.*_exps\.)", "blk.0.ffn_gate_exps.weight"));
}

TEST(tensor_pattern, an_invalid_pattern_is_an_error_naming_it) {
  auto p = tensor_pattern::compile("blk\\.(1|2");
  ASSERT_FALSE(p);
  EXPECT_NE(p.err().message.find("'blk\\.(1|2'"), std::string::npos) << p.err().message;
  EXPECT_EQ(p.err().exit_code, 2);
  EXPECT_FALSE(tensor_pattern::compile("[z-a]"));
  // a number std::regex would overflow on (found by plan_server_args_fuzz)
  auto big = tensor_pattern::compile("su+\\888888888888888888888attn_norm");
  ASSERT_FALSE(big);
  EXPECT_NE(big.err().message.find("more than 9 digits"), std::string::npos) << big.err().message;
  EXPECT_FALSE(tensor_pattern::compile("a{99999999999}"));
  EXPECT_TRUE(tensor_pattern::compile(R"(blk\.(1[0-9]|2[0-3])\.)"));
}

// std::regex (and so llama-server) runs for minutes on these; the bounded matcher answers at once.
TEST(tensor_pattern, a_pathological_pattern_is_an_error_not_a_hang) {
  for (std::string pat : {".*.*.*.*.*.*.*.*.*.*.*.*.*.*Z", "(a*)*b", "(a|aa)*c", "(.*a){12}x"}) {
    auto p = tensor_pattern::compile(pat);
    ASSERT_TRUE(p) << pat;
    auto r = p->search("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.weight");
    ASSERT_FALSE(r) << pat;
    EXPECT_NE(r.err().message.find(pat), std::string::npos) << r.err().message;
  }
}

}  // namespace
}  // namespace agifarm
