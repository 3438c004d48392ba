#include "plan/server_args.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <set>

namespace agifarm::plan {

std::string ffn_exps_block_regex(int layer) { return fmt::format("blk\\.{}{}", layer, k_ffn_exps_regex); }

namespace {

// std::regex (libstdc++, and so llama.cpp's own -ot matching) backtracks exponentially on nested
// repetition: "p**x", "(a*)*", "(a|ab)*". Such a pattern would hang both us and llama-server, so it is
// refused with a reason. Returns "" when the pattern is fine.
std::string nested_repetition(std::string_view p) {
  struct group {
    bool has_repeat = false, has_alt = false;
  };
  std::vector<group> open;
  group last_closed;
  bool after_group = false;   // the previous token was ')'
  bool after_repeat = false;  // the previous token was a quantifier (possibly made lazy by '?')
  bool lazy_allowed = false;  // a '?' here would make the previous quantifier lazy
  auto mark_repeat = [&] {
    if (!open.empty()) open.back().has_repeat = true;
  };
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    bool quant = c == '*' || c == '+' || c == '{' || (c == '?' && !lazy_allowed);
    if (c == '?' && lazy_allowed) {
      lazy_allowed = false;  // "*?" is one lazy quantifier
      continue;
    }
    if (quant) {
      if (after_repeat) return "a quantifier applied to a quantifier";
      if (after_group && (last_closed.has_repeat || last_closed.has_alt))
        return "a repeated group that itself repeats or alternates";
      if (c == '{') {
        auto close = p.find('}', i);
        if (close == std::string_view::npos) return "";  // not a bound: std::regex reports the error
        i = close;
      }
      mark_repeat();
      after_repeat = true;
      lazy_allowed = true;
      after_group = false;
      continue;
    }
    after_repeat = lazy_allowed = false;
    after_group = false;
    if (c == '\\') {
      ++i;
    } else if (c == '[') {
      std::size_t j = i + 1;
      if (j < p.size() && p[j] == '^') ++j;
      if (j < p.size() && p[j] == ']') ++j;
      while (j < p.size() && p[j] != ']') j += p[j] == '\\' ? 2 : 1;
      i = j;
    } else if (c == '(') {
      open.push_back({});
      if (i + 2 < p.size() && p[i + 1] == '?') i += 2;  // (?: (?= (?! are groups, not repetition
    } else if (c == ')') {
      if (open.empty()) return "";
      last_closed = open.back();
      open.pop_back();
      if (!open.empty()) {
        open.back().has_repeat |= last_closed.has_repeat;
        open.back().has_alt |= last_closed.has_alt;
      }
      after_group = true;
    } else if (c == '|') {
      if (!open.empty()) open.back().has_alt = true;
    }
  }
  return "";
}

constexpr std::size_t k_max_pattern = 512;

bool to_int64(const std::string& s, std::int64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

const std::set<std::string>& kv_types() {
  static const std::set<std::string> t{"f32",  "f16",    "bf16", "q8_0", "q4_0",
                                       "q4_1", "iq4_nl", "q5_0", "q5_1"};
  return t;
}

// Flags with a value that do not change memory placement.
const std::set<std::string>& ignored_with_value() {
  static const std::set<std::string> s{"--host",
                                       "--port",
                                       "-t",
                                       "--threads",
                                       "-tb",
                                       "--threads-batch",
                                       "-a",
                                       "--alias",
                                       "--api-key",
                                       "-n",
                                       "--n-predict",
                                       "--temp",
                                       "--top-k",
                                       "--top-p",
                                       "--min-p",
                                       "--seed",
                                       "-s",
                                       "--chat-template",
                                       "--log-file",
                                       "-lv",
                                       "--verbosity",
                                       "--log-verbosity",
                                       "--timeout",
                                       "--threads-http",
                                       "--slot-save-path",
                                       "--metrics-port",
                                       "--keep",
                                       "--cache-reuse",
                                       "--reasoning-format",
                                       "--reasoning-budget",
                                       "--jinja-file",
                                       "--numa",
                                       "--poll",
                                       "--prio",
                                       "--path",
                                       "--api-prefix",
                                       "--ctx-checkpoints",
                                       "--cache-ram",
                                       "-cram",
                                       "--fit-target",
                                       "-fitt",
                                       "--fit-ctx",
                                       "-fitc",
                                       "--device",
                                       "-dev",
                                       "--sleep-idle-seconds",
                                       "--rope-scaling",
                                       "--rope-freq-base",
                                       "--rope-freq-scale",
                                       "--yarn-orig-ctx",
                                       "-to",
                                       "--models-dir",
                                       "--models-max"};
  return s;
}
const std::set<std::string>& ignored_flags() {
  static const std::set<std::string> s{"--jinja",
                                       "--no-jinja",
                                       "--metrics",
                                       "--slots",
                                       "--no-slots",
                                       "--props",
                                       "--verbose",
                                       "-v",
                                       "--log-disable",
                                       "--cont-batching",
                                       "-cb",
                                       "--no-cont-batching",
                                       "-nocb",
                                       "--mlock",
                                       "--no-warmup",
                                       "--warmup",
                                       "--embedding",
                                       "--embeddings",
                                       "--no-webui",
                                       "--log-colors",
                                       "--check-tensors",
                                       "--no-perf",
                                       "--no-op-offload",
                                       "--context-shift",
                                       "--no-context-shift",
                                       "--direct-io",
                                       "-dio"};
  return s;
}

}  // namespace

result<server_args> parse_server_args(std::span<const std::string> args) {
  server_args a;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& f = args[i];
    auto where = [&] { return fmt::format("argument {} '{}'", i + 1, f); };
    auto value = [&](std::string& out) -> status {
      if (i + 1 >= args.size()) return make_error(where() + ": missing value", 2);
      out = args[++i];
      return {};
    };
    auto int_value = [&](std::int64_t lo, std::int64_t hi, std::int64_t& out) -> status {
      std::string v;
      if (auto s = value(v); !s) return s;
      if (!to_int64(v, out) || out < lo || out > hi)
        return make_error(fmt::format("{}: '{}' is not an integer in {}..{}", where(), v, lo, hi), 2);
      return {};
    };
    std::string v;
    std::int64_t n = 0;
    status st;
    if (f == "-m" || f == "--model") {
      st = value(a.model);
    } else if (f == "-c" || f == "--ctx-size") {
      st = int_value(0, 1 << 24, n);
      a.ctx = n;
    } else if (f == "-np" || f == "--parallel") {
      st = int_value(-1, 256, n);
      if (st && n == 0) st = make_error(where() + ": 0 slots", 2);
      a.n_parallel = static_cast<int>(n);
    } else if (f == "-ngl" || f == "--gpu-layers" || f == "--n-gpu-layers") {
      st = value(v);
      if (st) {
        if (v == "auto")
          a.n_gpu_layers = -1;
        else if (v == "all")
          a.n_gpu_layers = -2;
        else if (!to_int64(v, n) || n < -2 || n > 100000)
          st = make_error(fmt::format("{}: '{}' is not a layer count, 'auto' or 'all'", where(), v), 2);
        else
          a.n_gpu_layers = static_cast<int>(n);
      }
    } else if (f == "-ts" || f == "--tensor-split") {
      st = value(v);
      if (st) {
        a.tensor_split.clear();
        for (const auto& part : split(v, v.find('/') != std::string::npos ? '/' : ',')) {
          char* end = nullptr;
          errno = 0;
          double x = std::strtod(part.c_str(), &end);
          if (part.empty() || end != part.c_str() + part.size() || !std::isfinite(x) || x < 0 || x > 1e9) {
            st = make_error(fmt::format("{}: '{}' is not a list of non-negative proportions", where(), v), 2);
            break;
          }
          a.tensor_split.push_back(static_cast<float>(x));
        }
        if (st && a.tensor_split.size() > 128) st = make_error(where() + ": more than 128 proportions", 2);
      }
    } else if (f == "-sm" || f == "--split-mode") {
      st = value(v);
      if (st) {
        if (v == "none")
          a.split = split_mode::none;
        else if (v == "layer")
          a.split = split_mode::layer;
        else if (v == "row")
          a.split = split_mode::row;
        else
          st = make_error(fmt::format("{}: unknown split mode '{}' (none, layer or row)", where(), v), 2);
      }
    } else if (f == "-mg" || f == "--main-gpu") {
      st = int_value(0, 127, n);
      a.main_gpu = static_cast<int>(n);
    } else if (f == "-ot" || f == "--override-tensor") {
      st = value(v);
      for (const auto& item : st ? split(v, ',') : std::vector<std::string>{}) {
        auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
          st = make_error(fmt::format("{}: '{}' is not <tensor name pattern>=<buffer type>", where(), item),
                          2);
          break;
        }
        if (eq > k_max_pattern) {
          st = make_error(fmt::format("{}: pattern longer than {} characters", where(), k_max_pattern), 2);
          break;
        }
        if (auto why = nested_repetition(std::string_view(item).substr(0, eq)); !why.empty()) {
          st = make_error(fmt::format("{}: pattern '{}' has {}, which std::regex (and llama.cpp) can take "
                                      "exponential time on; write it without nested repetition",
                                      where(), item.substr(0, eq), why),
                          2);
          break;
        }
        a.overrides.push_back({item.substr(0, eq), item.substr(eq + 1)});
      }
    } else if (f == "-cmoe" || f == "--cpu-moe") {
      a.overrides.push_back({k_ffn_exps_regex, "CPU"});
    } else if (f == "-ncmoe" || f == "--n-cpu-moe") {
      st = int_value(0, 100000, n);
      for (int l = 0; st && l < n; ++l) a.overrides.push_back({ffn_exps_block_regex(l), "CPU"});
    } else if (f == "-ncffn" || f == "--n-cpu-ffn") {
      st = int_value(0, 100000, n);
      for (int l = 0; st && l < n; ++l)
        a.overrides.push_back({fmt::format("blk\\.{}\\.ffn_(up|down|gate)\\.", l), "CPU"});
    } else if (f == "-ctk" || f == "--cache-type-k" || f == "-ctv" || f == "--cache-type-v") {
      st = value(v);
      if (st && !kv_types().count(v))
        st = make_error(
            fmt::format(
                "{}: unsupported cache type '{}' (f16, bf16, f32, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1)",
                where(), v),
            2);
      if (st) (f == "-ctk" || f == "--cache-type-k" ? a.type_k : a.type_v) = v;
    } else if (f == "-fa" || f == "--flash-attn") {
      st = value(v);
      if (st) {
        if (v == "on" || v == "1" || v == "true")
          a.flash_attn = "on";
        else if (v == "off" || v == "0" || v == "false")
          a.flash_attn = "off";
        else if (v == "auto")
          a.flash_attn = "auto";
        else
          st = make_error(fmt::format("{}: '{}' is not on, off or auto", where(), v), 2);
      }
    } else if (f == "-b" || f == "--batch-size") {
      st = int_value(1, 1 << 20, n);
      a.n_batch = static_cast<int>(n);
    } else if (f == "-ub" || f == "--ubatch-size") {
      st = int_value(1, 1 << 20, n);
      a.n_ubatch = static_cast<int>(n);
    } else if (f == "--swa-full") {
      a.swa_full = true;
    } else if (f == "-kvu" || f == "--kv-unified") {
      a.kv_unified = true;
    } else if (f == "-no-kvu" || f == "--no-kv-unified") {
      a.kv_unified = false;
    } else if (f == "-nkvo" || f == "--no-kv-offload") {
      a.no_kv_offload = true;
    } else if (f == "--no-mmap") {
      a.no_mmap = true;
    } else if (f == "--mmap") {
      a.no_mmap = false;
    } else if (f == "--rpc") {
      st = value(v);
      if (st) {
        a.rpc.clear();
        for (const auto& s : split(v, ',')) {
          if (s.empty() || s.find(':') == std::string::npos) {
            st = make_error(fmt::format("{}: '{}' is not host:port", where(), s), 2);
            break;
          }
          a.rpc.push_back(s);
        }
      }
    } else if (ignored_with_value().count(f)) {
      st = value(v);
      a.ignored.push_back(f);
    } else if (ignored_flags().count(f)) {
      a.ignored.push_back(f);
    } else {
      a.ignored.push_back(f);  // unknown: kept so the caller can warn; never fatal
    }
    if (!st) return st.err();
  }
  // llama.cpp clamps the micro-batch to the batch.
  if (a.n_ubatch > a.n_batch) a.n_ubatch = a.n_batch;
  return a;
}

}  // namespace agifarm::plan
