#include "gateway/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace agifarm::gateway {

std::string prometheus_escape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void metrics::histogram::observe(double v) {
  for (std::size_t i = 0; i < k_buckets.size(); ++i) {
    if (v <= k_buckets[i]) {
      counts[i]++;
      break;
    }
  }
  count++;
  sum += v;
}

metrics::metrics(std::vector<std::string> pools, std::vector<std::string> replicas)
    : pools_(std::move(pools)),
      replicas_(std::move(replicas)),
      duration_(pools_.size()),
      ttfb_(pools_.size()),
      prompt_(pools_.size()),
      completion_(pools_.size()),
      retries_(pools_.size()) {}

void metrics::request_done(std::size_t pool, std::size_t replica, int status, double duration_s,
                           double ttfb_s) {
  std::lock_guard lock(mu_);
  requests_[{pool, replica, status}]++;
  if (pool < pools_.size()) {
    duration_[pool].observe(duration_s);
    if (ttfb_s >= 0) ttfb_[pool].observe(ttfb_s);
  }
}

void metrics::tokens(std::size_t pool, std::uint64_t prompt, std::uint64_t completion) {
  std::lock_guard lock(mu_);
  if (pool >= pools_.size()) return;
  prompt_[pool] += prompt;
  completion_[pool] += completion;
}

void metrics::retry(std::size_t pool) {
  std::lock_guard lock(mu_);
  if (pool < pools_.size()) retries_[pool]++;
}

std::string metrics::render(const std::vector<scheduler::replica_state>& replicas,
                            const std::vector<scheduler::pool_state>& pools,
                            std::uint64_t open_connections) const {
  std::lock_guard lock(mu_);
  std::string o;
  o.reserve(8192);
  auto pool_label = [&](std::size_t p) {
    return p < pools_.size() ? prometheus_escape(pools_[p]) : std::string("none");
  };
  auto replica_label = [&](std::size_t r) {
    return r < replicas_.size() ? prometheus_escape(replicas_[r]) : std::string("none");
  };
  o += "# HELP agifarm_gateway_requests_total Client requests finished, by pool, replica and HTTP status.\n";
  o += "# TYPE agifarm_gateway_requests_total counter\n";
  for (const auto& [k, v] : requests_)
    o += fmt::format("agifarm_gateway_requests_total{{pool=\"{}\",replica=\"{}\",code=\"{}\"}} {}\n",
                     pool_label(std::get<0>(k)), replica_label(std::get<1>(k)), std::get<2>(k), v);
  auto hist = [&](const char* name, const char* help, const std::vector<histogram>& h) {
    o += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    for (std::size_t p = 0; p < h.size(); ++p) {
      std::uint64_t cum = 0;
      std::string pl = pool_label(p);
      for (std::size_t i = 0; i < k_buckets.size(); ++i) {
        cum += h[p].counts[i];
        o += fmt::format("{}_bucket{{pool=\"{}\",le=\"{}\"}} {}\n", name, pl, k_buckets[i], cum);
      }
      o += fmt::format("{}_bucket{{pool=\"{}\",le=\"+Inf\"}} {}\n", name, pl, h[p].count);
      o += fmt::format("{}_sum{{pool=\"{}\"}} {}\n", name, pl, h[p].sum);
      o += fmt::format("{}_count{{pool=\"{}\"}} {}\n", name, pl, h[p].count);
    }
  };
  hist("agifarm_gateway_request_duration_seconds", "Time from request header to the last response byte.",
       duration_);
  hist("agifarm_gateway_time_to_first_byte_seconds",
       "Time from request header to the first response body byte (first token of a stream).", ttfb_);
  auto per_pool = [&](const char* name, const char* type, const char* help, auto get) {
    o += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (std::size_t p = 0; p < pools_.size(); ++p)
      o += fmt::format("{}{{pool=\"{}\"}} {}\n", name, pool_label(p), get(p));
  };
  per_pool("agifarm_gateway_prompt_tokens_total", "counter", "Prompt tokens reported by backends.",
           [&](std::size_t p) { return prompt_[p]; });
  per_pool("agifarm_gateway_completion_tokens_total", "counter", "Completion tokens reported by backends.",
           [&](std::size_t p) { return completion_[p]; });
  per_pool("agifarm_gateway_retries_total", "counter",
           "Attempts retried on another replica before the first byte.",
           [&](std::size_t p) { return retries_[p]; });
  per_pool("agifarm_gateway_queue_depth", "gauge", "Requests waiting for a free slot.",
           [&](std::size_t p) { return p < pools.size() ? pools[p].queued : 0; });
  auto per_replica = [&](const char* name, const char* type, const char* help, auto get) {
    o += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& r : replicas)
      o += fmt::format("{}{{replica=\"{}\"}} {}\n", name, prometheus_escape(r.name), get(r));
  };
  per_replica("agifarm_gateway_replica_healthy", "gauge", "1 unless ejected by outlier detection.",
              [](const scheduler::replica_state& r) { return r.ejected ? 0 : 1; });
  per_replica("agifarm_gateway_replica_ready", "gauge", "1 unless taken out by the supervisor.",
              [](const scheduler::replica_state& r) { return r.ready ? 1 : 0; });
  per_replica("agifarm_gateway_replica_outstanding", "gauge", "Requests in flight on the replica.",
              [](const scheduler::replica_state& r) { return r.outstanding; });
  per_replica("agifarm_gateway_replica_ejections_total", "counter", "Times the replica was ejected.",
              [](const scheduler::replica_state& r) { return r.ejections; });
  o += "# HELP agifarm_gateway_open_connections Client connections open now.\n";
  o += "# TYPE agifarm_gateway_open_connections gauge\n";
  o += fmt::format("agifarm_gateway_open_connections {}\n", open_connections);
  return o;
}

std::string render_models(const std::vector<model_status>& models) {
  std::string out;
  out +=
      "# HELP agifarm_model_state A model's on-demand state (1 for the current one).\n# TYPE "
      "agifarm_model_state gauge\n";
  for (const auto& m : models)
    for (const char* st : {"loaded", "loading", "unloaded", "evicted", "stopping"})
      out += fmt::format("agifarm_model_state{{model=\"{}\",state=\"{}\"}} {}\n", prometheus_escape(m.name),
                         st, m.state == st ? 1 : 0);
  auto counter = [&](const char* name, const char* help, auto get) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
    for (const auto& m : models)
      out += fmt::format("{}{{model=\"{}\"}} {}\n", name, prometheus_escape(m.name), get(m));
  };
  counter("agifarm_model_loads_total", "Loads of the model (its backends started on demand or at start-up).",
          [](const model_status& m) { return m.loads; });
  counter("agifarm_model_evictions_total", "Times the model was stopped to make room for another.",
          [](const model_status& m) { return m.evictions; });
  counter("agifarm_model_unloads_total", "Times the model was stopped after its ttl idle.",
          [](const model_status& m) { return m.unloads; });
  counter("agifarm_model_load_seconds_total", "Seconds spent loading the model, all loads.",
          [](const model_status& m) { return m.total_load_s; });
  out +=
      "# HELP agifarm_model_load_seconds_last Seconds its last load took.\n# TYPE "
      "agifarm_model_load_seconds_last gauge\n";
  for (const auto& m : models)
    out += fmt::format("agifarm_model_load_seconds_last{{model=\"{}\"}} {}\n", prometheus_escape(m.name),
                       m.last_load_s);
  return out;
}

std::string render_memory(const std::vector<memory_row>& rows) {
  std::string out;
  if (rows.empty()) return out;
  auto labels = [](const memory_row& r) {
    return fmt::format("backend=\"{}\",model=\"{}\",node=\"{}\",device=\"{}\"", prometheus_escape(r.backend),
                       prometheus_escape(r.model), prometheus_escape(r.node), prometheus_escape(r.device));
  };
  auto family = [&](const char* name, const char* help, auto pick) {
    bool any =
        std::any_of(rows.begin(), rows.end(), [&](const memory_row& r) { return pick(r).has_value(); });
    if (!any) return;
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
    for (const auto& r : rows) {
      const std::optional<memory_buffers> b = pick(r);
      if (!b) continue;
      const auto l = labels(r);
      out += fmt::format("{}{{{},buffer=\"model\"}} {}\n", name, l, b->model_bytes);
      out += fmt::format("{}{{{},buffer=\"kv\"}} {}\n", name, l, b->kv_bytes);
      out += fmt::format("{}{{{},buffer=\"compute\"}} {}\n", name, l, b->compute_bytes);
    }
  };
  family("agifarm_backend_memory_predicted_bytes",
         "A backend's memory on a device as the plan predicted it, by buffer.",
         [](const memory_row& r) { return r.predicted; });
  family("agifarm_backend_memory_measured_bytes",
         "A backend's memory on a device as llama-server allocated it at load (its buffer lines), by buffer.",
         [](const memory_row& r) { return r.measured; });
  bool both =
      std::any_of(rows.begin(), rows.end(), [](const memory_row& r) { return r.predicted && r.measured; });
  if (both) {
    out +=
        "# HELP agifarm_backend_memory_diff_bytes Measured minus predicted memory of a backend on a device "
        "(all buffers).\n"
        "# TYPE agifarm_backend_memory_diff_bytes gauge\n";
    for (const auto& r : rows)
      if (r.predicted && r.measured)
        out += fmt::format(
            "agifarm_backend_memory_diff_bytes{{{}}} {}\n", labels(r),
            static_cast<std::int64_t>(r.measured->total()) - static_cast<std::int64_t>(r.predicted->total()));
  }
  return out;
}

}  // namespace agifarm::gateway
