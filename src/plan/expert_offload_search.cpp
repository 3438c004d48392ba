// The MoE expert-offload search, once for the planner's placements (choose_expert_offload) and for
// given devices (choose_offload): move the experts of the biggest layers of each overflowing device to
// system RAM until every device fits.
#include <algorithm>

#include "common/ot_rules.hpp"
#include "plan/planner_internal.hpp"

namespace agifarm::plan {

namespace detail {

// The pattern part of the one -ot rule (common/ot_rules: merged ranges, llama.cpp's expert suffix) that
// the deployment's backend_argv also writes, so `up` and `emit` run this exact rule.
std::string experts_of_layers(const std::set<int>& layers) {
  std::string rule = expert_offload_rule(std::vector<int>(layers.begin(), layers.end()), "CPU");
  return rule.substr(0, rule.rfind('='));
}

bool offload_more_layers(const model_shape& m, const memory_estimate& est, int device,
                         std::int64_t over_bytes, std::set<int>& chosen) {
  std::vector<std::pair<std::uint64_t, int>> layers;
  for (int l = 0; l < static_cast<int>(m.n_layer); ++l)
    if (est.layer_device[l] == device && !chosen.count(l)) layers.push_back({m.layer_expert_bytes(l), -l});
  std::sort(layers.rbegin(), layers.rend());  // biggest first, lower layer index on ties
  bool progress = false;
  for (auto [bytes, neg] : layers) {
    if (over_bytes <= 0 || bytes == 0) break;
    chosen.insert(-neg);
    over_bytes -= static_cast<std::int64_t>(bytes);
    progress = true;
  }
  return progress;
}

namespace {
// How far device i's estimate exceeds its capacity less the margin (<= 0: it fits).
std::int64_t overflow(std::uint64_t capacity, std::uint64_t margin, std::uint64_t total) {
  std::uint64_t limit = capacity > margin ? capacity - margin : 0;
  return static_cast<std::int64_t>(total) - static_cast<std::int64_t>(limit);
}
}  // namespace

bool choose_expert_offload(const planner_ctx& pc, const model_shape& m, placement& p) {
  std::set<int> chosen;
  for (int iter = 0; iter < static_cast<int>(m.n_layer) + 2; ++iter) {
    p.ot.clear();
    if (!chosen.empty()) p.ot.push_back(experts_of_layers(chosen) + "=CPU");
    evaluate(pc, m, p);
    if (p.fits) return true;
    bool progress = false;
    const std::size_t n_devices = p.remote.size() + p.local.size();
    for (std::size_t i = 0; i < n_devices; ++i) {
      std::int64_t over = overflow(p.caps[i], pc.opt.device_margin_bytes, p.est.devices[i].total_bytes);
      if (over > 0 && offload_more_layers(m, p.est, static_cast<int>(i), over, chosen)) progress = true;
    }
    if (!progress) return false;
  }
  return false;
}

}  // namespace detail

result<offload_choice> choose_offload(const model_shape& m, const server_args& base,
                                      const std::vector<device_desc>& devices, std::uint64_t margin_bytes) {
  offload_choice out;
  std::set<int> chosen;
  for (int iter = 0; iter < static_cast<int>(m.n_layer) + 2; ++iter) {
    server_args a = base;
    out.ot_rule.clear();
    if (!chosen.empty()) {
      std::string pattern = detail::experts_of_layers(chosen);
      out.ot_rule = pattern + "=CPU";
      a.overrides.insert(a.overrides.begin(), {pattern, "CPU"});
    }
    auto est = estimate_memory(m, a, devices);
    if (!est) return est.err();
    out.estimate = std::move(est).value();
    out.host_layers.assign(chosen.begin(), chosen.end());
    bool progress = false, fits = true;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      std::int64_t over =
          detail::overflow(devices[i].free_bytes, margin_bytes, out.estimate.devices[i].total_bytes);
      if (over <= 0) continue;
      fits = false;
      if (detail::offload_more_layers(m, out.estimate, static_cast<int>(i), over, chosen)) progress = true;
    }
    if (fits) {
      out.fits = true;
      return out;
    }
    if (!progress) return out;
  }
  return out;
}

}  // namespace agifarm::plan
