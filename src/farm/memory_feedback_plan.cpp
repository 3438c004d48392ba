#include "farm/memory_feedback_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "plan/devices.hpp"

namespace agifarm::farm {
namespace {
std::string mib(std::uint64_t b) { return fmt::format("{} MiB", (b + (1u << 19)) >> 20); }
}  // namespace

std::vector<std::string> gpu_kinds(const hw::inventory& inv) {
  std::vector<std::string> out;
  auto add = [&](const std::string& k) {
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  };
  for (const auto& n : inv.nodes)
    for (const auto& g : n.gpus) add(std::string(plan::backend_name(g.vendor)));
  if (inv.nodes.size() > 1) add("RPC");
  return out;
}

std::vector<std::string> apply_memory_feedback(const std::string& path, std::vector<model_ref> models,
                                               const hw::inventory& inv, plan::plan_options& opt,
                                               const margin_rule& rule) {
  std::vector<std::string> lines;
  auto fb = load_memory_feedback(path);
  if (!fb) return {fmt::format("measured memory not used: {}", fb.err().message)};
  if (fb->observations.empty()) return lines;
  for (auto& m : models) {
    std::error_code ec;
    if (m.file.empty()) continue;
    auto abs = std::filesystem::weakly_canonical(m.file, ec);
    if (!ec) m.file = abs.string();
  }
  const auto kinds = gpu_kinds(inv);
  const auto margins = margins_from(*fb, models, opt.host_reserve_bytes, rule);
  std::uint64_t device_margin = 0;
  bool any_gpu = false;
  for (const auto& k : kinds) {
    auto it = std::find_if(margins.begin(), margins.end(),
                           [&](const kind_margin& m) { return m.device_kind == k; });
    if (it == margins.end()) {
      device_margin = std::max(device_margin, opt.device_margin_bytes);
    } else {
      device_margin = std::max(device_margin, it->margin_bytes);
      any_gpu = true;
    }
  }
  for (const auto& m : margins) {
    const bool host = m.device_kind == "host";
    if (!host && std::find(kinds.begin(), kinds.end(), m.device_kind) == kinds.end())
      continue;  // not on this inventory
    for (const auto& o : m.used)
      lines.push_back(fmt::format("used measured memory from {}: {}", path, describe(o)));
    if (host)
      lines.push_back(fmt::format("  host reserve {} (was {}: {} + {} the predictions missed)",
                                  mib(m.margin_bytes), mib(opt.host_reserve_bytes),
                                  mib(opt.host_reserve_bytes), mib(m.shortfall_bytes)));
    else
      lines.push_back(fmt::format("  {} margin {} (was {}: max({} floor, {} missed + {} safety), at most {})",
                                  m.device_kind, mib(m.margin_bytes), mib(opt.device_margin_bytes),
                                  mib(rule.floor_bytes), mib(m.shortfall_bytes), mib(rule.safety_bytes),
                                  mib(rule.cap_bytes)));
  }
  for (const auto& m : margins)
    if (m.device_kind == "host") opt.host_reserve_bytes = m.margin_bytes;
  if (any_gpu) {
    if (kinds.size() > 1) {
      std::string all;
      for (const auto& k : kinds) all += (all.empty() ? "" : ", ") + k;
      lines.push_back(
          fmt::format("  every GPU margin {} (the largest of {}: the planner has one margin for all)",
                      mib(device_margin), all));
    }
    opt.device_margin_bytes = device_margin;
  }
  return lines;
}

}  // namespace agifarm::farm
