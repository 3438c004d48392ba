#include "common/ot_rules.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "common/tensor_pattern.hpp"

namespace agifarm {
namespace {

long long pow10(int k) {
  long long p = 1;
  while (k-- > 0) p *= 10;
  return p;
}

// The classic split of [lo, hi] into sub-ranges of the form prefix + [a-b] + [0-9]...: first up to the
// next "...999" boundaries from lo, then down from hi to the "...000" boundaries.
std::vector<std::pair<long long, long long>> split_range(long long lo, long long hi) {
  std::set<long long> stops{hi};
  for (int nines = 1;; ++nines) {
    long long stop = (lo / pow10(nines)) * pow10(nines) + pow10(nines) - 1;
    if (!(lo <= stop && stop < hi)) break;
    stops.insert(stop);
  }
  for (int zeros = 1;; ++zeros) {
    long long stop = (hi + 1) - (hi + 1) % pow10(zeros) - 1;
    if (!(lo < stop && stop <= hi)) break;
    stops.insert(stop);
  }
  std::vector<std::pair<long long, long long>> out;
  long long start = lo;
  for (long long s : stops) {
    out.emplace_back(start, s);
    start = s + 1;
  }
  return out;
}

std::string digit_class(char a, char b) {
  if (a == b) return std::string(1, a);
  if (b == a + 1) return std::string{'[', a, b, ']'};
  return std::string{'[', a, '-', b, ']'};
}

// A pattern as one digit range per position: [start, stop] of equal length (split_range guarantees it)
// is the digits of start and stop position by position.
using digit_ranges = std::vector<std::pair<char, char>>;

digit_ranges range_digits(long long start, long long stop) {
  std::string a = std::to_string(start), b = std::to_string(stop);
  digit_ranges out;
  for (std::size_t i = 0; i < a.size(); ++i) out.emplace_back(a[i], b[i]);
  return out;
}

// Two consecutive patterns that differ in one position only, where their digit ranges touch, are one
// pattern: 2[0-9] and 3[0-9] -> [23][0-9].
bool merge_into(digit_ranges& p, const digit_ranges& q) {
  if (p.size() != q.size()) return false;
  int diff = -1;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (p[i] != q[i]) {
      if (diff >= 0) return false;
      diff = static_cast<int>(i);
    }
  if (diff < 0) return true;
  if (p[diff].second + 1 != q[diff].first) return false;
  p[diff].second = q[diff].second;
  return true;
}

}  // namespace

std::string numbers_regex(std::vector<int> numbers) {
  std::sort(numbers.begin(), numbers.end());
  numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
  std::vector<digit_ranges> patterns;
  std::size_t i = 0;
  while (i < numbers.size()) {
    std::size_t j = i;
    while (j + 1 < numbers.size() && numbers[j + 1] == numbers[j] + 1) ++j;
    for (auto [lo, hi] : split_range(numbers[i], numbers[j])) {
      digit_ranges d = range_digits(lo, hi);
      if (patterns.empty() || !merge_into(patterns.back(), d)) patterns.push_back(d);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : patterns) {
    if (!out.empty()) out += '|';
    for (auto [a, b] : p) out += digit_class(a, b);
  }
  return out;
}

std::string expert_offload_rule(const std::vector<int>& layers, const std::string& buffer_type) {
  if (layers.empty()) return {};
  std::string alt = numbers_regex(layers);
  bool single = alt.find('|') == std::string::npos;
  return "blk\\." + (single ? alt : "(" + alt + ")") + k_ffn_exps_regex + "=" + buffer_type;
}

std::optional<std::vector<int>> expert_rule_layers(const std::string& pattern, int max_layer) {
  // libstdc++'s regex compiler recurses; a huge pattern from a hand-edited plan must not exhaust the
  // stack. Real rules are a few hundred characters at most.
  if (pattern.size() > k_max_rule_pattern || max_layer > 4096) return std::nullopt;
  auto re = tensor_pattern::compile(pattern);
  if (!re) return std::nullopt;
  // 1: matches, 0: does not, -1: the matcher gave up (a pathological pattern is not a rule we rewrite)
  auto hit = [&](const std::string& name) {
    auto r = re->search(name);
    return r ? int{*r} : -1;
  };
  for (const char* global : {"token_embd.weight", "output.weight", "output_norm.weight", "rope_freqs.weight"})
    if (hit(global) != 0) return std::nullopt;
  std::vector<int> layers;
  for (int l = 0; l <= max_layer; ++l) {
    std::string blk = "blk." + std::to_string(l) + ".";
    int experts = 0;
    for (const char* t : {"ffn_up_exps.weight", "ffn_down_exps.weight", "ffn_gate_exps.weight"}) {
      int h = hit(blk + t);
      if (h < 0) return std::nullopt;
      experts += h;
    }
    for (const char* t :
         {"attn_q.weight", "attn_k.weight", "attn_output.weight", "attn_norm.weight", "ffn_up.weight",
          "ffn_down.weight", "ffn_gate_inp.weight", "ffn_up_shexp.weight", "ffn_norm.weight"})
      if (hit(blk + t) != 0) return std::nullopt;
    if (experts == 3)
      layers.push_back(l);
    else if (experts != 0)
      return std::nullopt;
  }
  return layers;
}

std::vector<std::string> merge_override_args(const std::vector<std::string>& args) {
  struct rule {
    std::vector<int> layers;
    std::string buffer;
  };
  std::vector<rule> rules;
  std::vector<std::string> rest;
  std::size_t first_ot = std::string::npos;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "-ot" || args[i] == "--override-tensor") && i + 1 < args.size()) {
      if (first_ot == std::string::npos) first_ot = rest.size();
      const std::string& value = args[++i];
      std::size_t start = 0;
      while (start <= value.size()) {
        std::size_t comma = value.find(',', start);
        std::string item =
            value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        start = comma == std::string::npos ? value.size() + 1 : comma + 1;
        std::size_t eq = item.find('=');
        if (eq == std::string::npos) return args;
        auto layers = expert_rule_layers(item.substr(0, eq));
        if (!layers) return args;
        rules.push_back({*layers, item.substr(eq + 1)});
      }
    } else {
      rest.push_back(args[i]);
    }
  }
  if (rules.empty()) return args;
  // First match wins: each layer goes to the first rule that names it.
  std::vector<std::string> buffers;
  std::map<std::string, std::vector<int>> by_buffer;
  std::set<int> placed;
  for (const auto& r : rules) {
    if (std::find(buffers.begin(), buffers.end(), r.buffer) == buffers.end()) buffers.push_back(r.buffer);
    for (int l : r.layers)
      if (placed.insert(l).second) by_buffer[r.buffer].push_back(l);
  }
  std::vector<std::string> merged;
  for (const auto& b : buffers) {
    std::string r = expert_offload_rule(by_buffer[b], b);
    if (!r.empty()) merged.insert(merged.end(), {"-ot", r});
  }
  rest.insert(rest.begin() + static_cast<std::ptrdiff_t>(first_ot), merged.begin(), merged.end());
  return rest;
}

}  // namespace agifarm
