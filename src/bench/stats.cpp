#include "bench/stats.hpp"

#include <algorithm>
#include <cmath>

namespace agifarm::bench {
namespace json = boost::json;

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  q = std::clamp(q, 0.0, 100.0);
  double rank = q / 100.0 * static_cast<double>(v.size() - 1);
  auto lo = static_cast<std::size_t>(std::floor(rank));
  auto hi = std::min(lo + 1, v.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return v[lo] + (v[hi] - v[lo]) * frac;
}

distribution distribution_of(const std::vector<double>& values) {
  distribution d;
  d.count = values.size();
  if (values.empty()) return d;
  double sum = 0;
  for (double x : values) sum += x;
  d.mean = sum / static_cast<double>(values.size());
  auto [mn, mx] = std::minmax_element(values.begin(), values.end());
  d.min = *mn;
  d.max = *mx;
  d.p50 = percentile(values, 50);
  d.p95 = percentile(values, 95);
  d.p99 = percentile(values, 99);
  return d;
}

namespace {

struct accumulator {
  pool_summary s;
  std::vector<double> ttft, itl, e2e;
  void add(const request_record& r, std::size_t bucket) {
    ++s.requests;
    if (r.ok)
      ++s.ok;
    else
      ++s.errors[r.error.empty() ? "unknown" : r.error];
    if (r.ok) {
      e2e.push_back(r.end_s - r.start_s);
      if (r.ttft_s >= 0) ttft.push_back(r.ttft_s);
    }
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    s.prompt_tokens += r.prompt_tokens;
    s.completion_tokens += r.completion_tokens;
    auto& p = s.series[bucket];
    ++p.requests;
    if (!r.ok) ++p.errors;
    p.prompt_tokens += r.prompt_tokens;
    p.completion_tokens += r.completion_tokens;
  }
  pool_summary finish(double wall_s) {
    s.ttft = distribution_of(ttft);
    s.itl = distribution_of(itl);
    s.e2e = distribution_of(e2e);
    s.prompt_tps = static_cast<double>(s.prompt_tokens) / wall_s;
    s.completion_tps = static_cast<double>(s.completion_tokens) / wall_s;
    s.requests_per_s = static_cast<double>(s.requests) / wall_s;
    return std::move(s);
  }
};

}  // namespace

summary summarize(const std::vector<request_record>& records, double wall_s) {
  summary out;
  out.wall_s = wall_s > 0 ? wall_s : 1e-9;
  auto buckets = static_cast<std::size_t>(std::max(1.0, std::ceil(out.wall_s)));
  auto init = [&](const std::string& name) {
    accumulator a;
    a.s.pool = name;
    a.s.series.resize(buckets);
    for (std::size_t i = 0; i < buckets; ++i) a.s.series[i].t = static_cast<double>(i);
    return a;
  };
  std::map<std::string, accumulator> by_pool;
  accumulator all = init("all");
  for (const auto& r : records) {
    double t = std::max(0.0, r.end_s);
    auto b = std::min(buckets - 1, static_cast<std::size_t>(t));
    auto name = r.pool.empty() ? std::string("(unknown)") : r.pool;
    auto it = by_pool.find(name);
    if (it == by_pool.end()) it = by_pool.emplace(name, init(name)).first;
    it->second.add(r, b);
    all.add(r, b);
  }
  for (auto& [name, a] : by_pool) out.pools.push_back(a.finish(out.wall_s));
  out.total = all.finish(out.wall_s);
  return out;
}

json::object to_json(const distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"min", d.min}, {"max", d.max},
          {"p50", d.p50},     {"p95", d.p95},   {"p99", d.p99}};
}

json::object to_json(const pool_summary& p) {
  json::object o;
  o["pool"] = p.pool;
  o["requests"] = p.requests;
  o["ok"] = p.ok;
  json::object errs;
  for (const auto& [k, n] : p.errors) errs[k] = n;
  o["errors"] = std::move(errs);
  o["ttft_s"] = to_json(p.ttft);
  o["itl_s"] = to_json(p.itl);
  o["e2e_s"] = to_json(p.e2e);
  o["prompt_tokens"] = p.prompt_tokens;
  o["completion_tokens"] = p.completion_tokens;
  o["prompt_tokens_per_s"] = p.prompt_tps;
  o["completion_tokens_per_s"] = p.completion_tps;
  o["requests_per_s"] = p.requests_per_s;
  json::array series;
  for (const auto& s : p.series)
    series.push_back(json::object{{"t", s.t},
                                  {"requests", s.requests},
                                  {"errors", s.errors},
                                  {"prompt_tokens", s.prompt_tokens},
                                  {"completion_tokens", s.completion_tokens}});
  o["series"] = std::move(series);
  return o;
}

json::object to_json(const summary& s) {
  json::object o;
  o["wall_s"] = s.wall_s;
  json::array pools;
  for (const auto& p : s.pools) pools.push_back(to_json(p));
  o["pools"] = std::move(pools);
  o["total"] = to_json(s.total);
  return o;
}

}  // namespace agifarm::bench
