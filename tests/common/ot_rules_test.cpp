// -ot rule merging: exact numeric-range regexes, llama.cpp's matching semantics (std::regex_search,
// first rule wins, ',' separates rules), and equivalence of merged and per-layer rules.
#include "common/ot_rules.hpp"

#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <set>

namespace agifarm {
namespace {

std::vector<int> range(int a, int b) {
  std::vector<int> v;
  for (int i = a; i <= b; ++i) v.push_back(i);
  return v;
}

TEST(NumbersRegex, MergesRangesIntoFewAlternatives) {
  EXPECT_EQ(numbers_regex({}), "");
  EXPECT_EQ(numbers_regex({7}), "7");
  EXPECT_EQ(numbers_regex(range(0, 9)), "[0-9]");
  EXPECT_EQ(numbers_regex({3, 4}), "[34]");
  EXPECT_EQ(numbers_regex(range(20, 47)), "[23][0-9]|4[0-7]");
  std::vector<int> brief = range(0, 9);
  brief.push_back(12);
  for (int i : range(20, 47)) brief.push_back(i);
  EXPECT_EQ(numbers_regex(brief), "[0-9]|12|[23][0-9]|4[0-7]");
  EXPECT_EQ(numbers_regex(range(0, 93)), "[0-9]|[1-8][0-9]|9[0-3]");
  EXPECT_EQ(numbers_regex(range(95, 123)), "9[5-9]|1[01][0-9]|12[0-3]");
  EXPECT_EQ(numbers_regex({5, 3, 5, 4}), "[3-5]");  // order and duplicates do not matter
}

// Property: for random layer sets, the alternation matches exactly the set's numbers among 0..999.
TEST(NumbersRegex, MatchesExactlyTheSetForRandomSets) {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 300; ++trial) {
    std::set<int> set;
    int n = std::uniform_int_distribution<int>(1, 60)(rng);
    int max = std::uniform_int_distribution<int>(1, 400)(rng);
    for (int i = 0; i < n; ++i) set.insert(std::uniform_int_distribution<int>(0, max)(rng));
    std::string alt = numbers_regex(std::vector<int>(set.begin(), set.end()));
    ASSERT_EQ(alt.find(','), std::string::npos);
    std::regex re("^(" + alt + ")$");
    for (int x = 0; x <= 999; ++x)
      ASSERT_EQ(std::regex_match(std::to_string(x), re), set.count(x) == 1)
          << "set regex " << alt << " number " << x;
  }
}

TEST(ExpertOffloadRule, IsOneReadableRuleWithLlamaCppsExpertSuffix) {
  std::vector<int> layers = range(0, 9);
  layers.push_back(12);
  for (int i : range(20, 47)) layers.push_back(i);
  EXPECT_EQ(expert_offload_rule(layers, "CPU"),
            "blk\\.([0-9]|12|[23][0-9]|4[0-7])\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU");
  EXPECT_EQ(expert_offload_rule({5}, "CUDA1"), "blk\\.5\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CUDA1");
  EXPECT_EQ(expert_offload_rule({}, "CPU"), "");
}

TEST(ExpertRuleLayers, ReadsLayerSetsAndRejectsOtherRules) {
  auto l = expert_rule_layers("blk\\.([0-9]|12|[23][0-9]|4[0-7])\\.ffn_(up|down|gate|gate_up)_(ch|)exps");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->size(), 10u + 1u + 28u);
  auto one = expert_rule_layers("blk\\.3\\.ffn_(up|down|gate)_exps");
  ASSERT_TRUE(one);
  EXPECT_EQ(*one, std::vector<int>{3});
  EXPECT_FALSE(expert_rule_layers("blk\\.3\\.ffn_up_exps"));  // only some of a layer's experts
  EXPECT_FALSE(expert_rule_layers("blk\\.3\\."));             // also attention tensors
  EXPECT_FALSE(expert_rule_layers("ffn_.*"));                 // also dense FFN
  EXPECT_FALSE(expert_rule_layers("token_embd"));
  EXPECT_FALSE(expert_rule_layers("blk\\.(3"));  // not a regex
  auto all = expert_rule_layers("\\.ffn_(up|down|gate)_exps", 93);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 94u);
}

// The buffer each tensor gets under llama.cpp's rules: first matching rule wins; rules split on ','.
std::string buffer_for(const std::vector<std::string>& args, const std::string& tensor) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] != "-ot" && args[i] != "--override-tensor") continue;
    std::string v = args[i + 1];
    std::size_t start = 0;
    while (start <= v.size()) {
      std::size_t comma = v.find(',', start);
      std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? v.size() + 1 : comma + 1;
      auto eq = item.find('=');
      if (std::regex_search(tensor, std::regex(item.substr(0, eq)))) return item.substr(eq + 1);
    }
  }
  return "default";
}

TEST(MergeOverrideArgs, PerLayerRulesBecomeOneEquivalentRulePerBuffer) {
  std::vector<std::string> args{"-m", "x.gguf", "-ngl", "999"};
  std::vector<int> cpu = range(0, 9);
  cpu.push_back(12);
  for (int i : range(20, 47)) cpu.push_back(i);
  for (int l : cpu)
    args.insert(args.end(), {"-ot", "blk\\." + std::to_string(l) + "\\.ffn_(up|down|gate)_exps=CPU"});
  args.insert(args.end(),
              {"-ot", "blk\\.10\\.ffn_(up|down|gate)_exps=CUDA1,blk\\.11\\.ffn_(up|down|gate)_exps=CUDA1"});
  args.insert(args.end(), {"-ot", "blk\\.12\\.ffn_(up|down|gate)_exps=CUDA1"});  // shadowed by the CPU rule
  args.insert(args.end(), {"-c", "4096"});
  auto merged = merge_override_args(args);
  std::vector<std::string> expected{
      "-m",   "x.gguf",
      "-ngl", "999",
      "-ot",  "blk\\.([0-9]|12|[23][0-9]|4[0-7])\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU",
      "-ot",  "blk\\.1[01]\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CUDA1",
      "-c",   "4096"};
  EXPECT_EQ(merged, expected);
  for (int l = 0; l < 64; ++l)
    for (const char* t : {"ffn_up_exps.weight", "ffn_down_exps.weight", "ffn_gate_exps.weight",
                          "attn_q.weight", "ffn_gate_inp.weight", "ffn_up_shexp.weight"}) {
      std::string name = "blk." + std::to_string(l) + "." + t;
      EXPECT_EQ(buffer_for(args, name), buffer_for(merged, name)) << name;
    }
}

TEST(MergeOverrideArgs, LeavesArgsAloneWhenAnyRuleIsNotAWholeLayerExpertRule) {
  std::vector<std::string> args{"-ot", "blk\\.1\\.ffn_(up|down|gate)_exps=CPU", "-ot", "token_embd=CPU"};
  EXPECT_EQ(merge_override_args(args), args);
  std::vector<std::string> none{"-m", "x.gguf", "--n-cpu-moe", "10"};
  EXPECT_EQ(merge_override_args(none), none);
  std::vector<std::string> bad{"-ot", "no-equals-sign"};
  EXPECT_EQ(merge_override_args(bad), bad);
}

}  // namespace
}  // namespace agifarm
