// ot_rules: the minimal, readable llama.cpp `--override-tensor` (-ot) rules for MoE expert offload,
// shared by the planner (which writes them) and plan::backend_argv (which every launcher and emitter
// uses), so `up` and `emit` run the same rules.
//
// llama.cpp applies `-ot PATTERN=BUFFER` rules with std::regex_search on tensor names (first matching
// rule wins, rules are split on ','). Writing one rule per layer gives a 48-rule argument nobody can
// read; these functions turn a set of layers into one alternation of merged numeric ranges, e.g.
// layers {0..9, 12, 20..47} -> `blk\.([0-9]|12|[23][0-9]|4[0-7])\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU`.
// Patterns never contain ',' or '=' (both are separators for llama.cpp). Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace agifarm {

// llama.cpp's own expert-tensor suffix (common/common.h LLM_FFN_EXPS_REGEX), used by --n-cpu-moe.
inline constexpr const char* k_ffn_exps_regex = "\\.ffn_(up|down|gate|gate_up)_(ch|)exps";

// A regex alternation (no surrounding parentheses) matching exactly the decimal numbers in `numbers`
// (non-negative; duplicates and order do not matter). Empty input gives an empty string.
std::string numbers_regex(std::vector<int> numbers);

// Longer patterns are never recognised as expert rules (left as they are).
inline constexpr std::size_t k_max_rule_pattern = 1024;

// One -ot value that puts the expert tensors of `layers` into `buffer_type` ("CPU", "CUDA1", ...).
// Empty `layers` gives an empty string (no rule).
std::string expert_offload_rule(const std::vector<int>& layers, const std::string& buffer_type);

// The layers whose expert tensors a pattern (the part before '=') selects, if it selects expert tensors
// of whole layers only (every expert tensor of a layer or none, and nothing that is not an expert
// tensor), probing layers 0..max_layer. nullopt when the pattern is not such a rule.
std::optional<std::vector<int>> expert_rule_layers(const std::string& pattern, int max_layer = 511);

// Rewrites the -ot / --override-tensor arguments of an argument list into the minimal equivalent form:
// one merged rule per buffer type, in the order the buffer types first appear. Done only when every
// rule is a whole-layer expert rule (see expert_rule_layers); otherwise `args` come back unchanged.
// Equivalence: every tensor name goes to the same buffer type before and after (first match wins).
std::vector<std::string> merge_override_args(const std::vector<std::string>& args);

}  // namespace agifarm
