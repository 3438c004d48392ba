// format_plan: the plan document as the human-readable ranked table `agifarm plan` prints.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "plan/planner.hpp"

namespace agifarm::plan {

namespace {
constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;
}  // namespace

std::string format_plan(const plan_document& d) {
  std::string out;
  auto bar = [](std::uint64_t used, std::uint64_t cap) {
    int w = 20;
    int n = cap ? static_cast<int>(std::min<double>(
                      w, std::round(w * static_cast<double>(used) / static_cast<double>(cap))))
                : 0;
    std::string s(1, '[');  // appended piecewise: "[" + std::string(...) trips GCC 12's -Wrestrict
    s.append(static_cast<std::size_t>(n), '#');
    s.append(static_cast<std::size_t>(w - n), '.');
    s += ']';
    if (cap && used > cap) s += "!";
    return s;
  };
  out += "roles:";
  for (const auto& r : d.roles)
    out += fmt::format("  {}={} (ctx {}, {} agent{})", r.name, r.model, r.ctx, r.agents,
                       r.agents == 1 ? "" : "s");
  out += "\n\n";
  int rank = 0;
  std::string last_model;
  for (const auto& c : d.candidates) {
    if (c.model != last_model) {
      out += fmt::format("== {} ==\n", c.model == "*" ? "all models together" : c.model);
      last_model = c.model;
      rank = 0;
    }
    ++rank;
    out += fmt::format("{}. {:<15} {}\n", rank, c.strategy, c.summary);
    if (c.feasible) {
      out += fmt::format(
          "   decode {:.1f} tok/s single, {:.1f} aggregate; prefill {:.0f} tok/s; max ctx {}; agents {}\n",
          c.decode_tps, c.aggregate_decode_tps, c.prefill_tps, c.max_ctx, c.agents);
    } else {
      out += fmt::format("   does not fit: {}\n", c.why_not);
      if (!c.fix.empty()) out += fmt::format("   would fit with: {}\n", c.fix);
    }
    for (std::size_t i = 0; i < c.devices.size(); ++i) {
      const auto& m = c.devices[i];
      std::uint64_t cap = i < c.device_capacity_bytes.size() ? c.device_capacity_bytes[i] : 0;
      out += fmt::format("   {:<28} {} {:6.1f}/{:6.1f} GiB (w {:.1f} kv {:.1f} c {:.1f})\n", m.name,
                         bar(m.total_bytes, cap), m.total_bytes / k_gib, cap / k_gib, m.model_bytes / k_gib,
                         m.context_bytes / k_gib, m.compute_bytes / k_gib);
    }
    if (!c.pros.empty()) {
      out += "   + ";
      for (std::size_t i = 0; i < c.pros.size(); ++i) out += (i ? "; " : "") + c.pros[i];
      out += "\n";
    }
    if (!c.cons.empty()) {
      out += "   - ";
      for (std::size_t i = 0; i < c.cons.size(); ++i) out += (i ? "; " : "") + c.cons[i];
      out += "\n";
    }
  }
  out += "\n";
  if (!d.recommendation.strategy.empty()) {
    out += fmt::format("recommendation: {}\n", d.recommendation.strategy);
    for (const auto& r : d.recommendation.reasons) out += "  - " + r + "\n";
    out += "backends:\n";
    for (const auto& b : d.chosen.backends) {
      out += fmt::format("  {} on {}: {}", b.name, b.node, to_string(b.kind));
      for (const auto& a : b.args) out += " " + a;
      out += "\n";
    }
  } else {
    out += "no feasible plan:\n";
    for (const auto& r : d.recommendation.reasons) out += "  - " + r + "\n";
  }
  for (const auto& w : d.warnings) out += "warning: " + w + "\n";
  for (const auto& n : d.notes) out += "note: " + n + "\n";
  return out;
}

}  // namespace agifarm::plan
