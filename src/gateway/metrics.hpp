// metrics: the gateway's Prometheus counters and histograms, rendered in the text exposition format
// (version 0.0.4) for GET /metrics. Thread-safe: every update takes one short mutex; render() copies.
//
// Series: agifarm_gateway_requests_total{pool,replica,code}, agifarm_gateway_request_duration_seconds
// {pool} (histogram), agifarm_gateway_time_to_first_byte_seconds{pool} (histogram; the first body byte,
// i.e. the first token of a stream), agifarm_gateway_prompt_tokens_total{pool},
// agifarm_gateway_completion_tokens_total{pool}, agifarm_gateway_retries_total{pool},
// agifarm_gateway_queue_depth{pool}, agifarm_gateway_replica_healthy{replica},
// agifarm_gateway_replica_ready{replica}, agifarm_gateway_replica_outstanding{replica},
// agifarm_gateway_replica_ejections_total{replica}, agifarm_gateway_open_connections.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "gateway/scheduler.hpp"

namespace agifarm::gateway {

inline constexpr std::size_t k_no_index = static_cast<std::size_t>(-1);

class metrics {
 public:
  metrics(std::vector<std::string> pools, std::vector<std::string> replicas);
  // pool/replica may be k_no_index (rejected before routing / before a replica was chosen).
  void request_done(std::size_t pool, std::size_t replica, int status, double duration_s, double ttfb_s = -1);
  void tokens(std::size_t pool, std::uint64_t prompt, std::uint64_t completion);
  void retry(std::size_t pool);
  std::string render(const std::vector<scheduler::replica_state>& replicas,
                     const std::vector<scheduler::pool_state>& pools, std::uint64_t open_connections) const;

  static constexpr std::array<double, 16> k_buckets{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                    1,     2.5,   5,    10,    30,   60,  120,  300};

 private:
  struct histogram {
    std::array<std::uint64_t, k_buckets.size()> counts{};  // non-cumulative
    std::uint64_t count = 0;
    double sum = 0;
    void observe(double v);
  };
  std::vector<std::string> pools_, replicas_;
  mutable std::mutex mu_;
  std::map<std::tuple<std::size_t, std::size_t, int>, std::uint64_t> requests_;
  std::vector<histogram> duration_, ttfb_;
  std::vector<std::uint64_t> prompt_, completion_, retries_;
};

// The on-demand series: agifarm_model_state{model,state} (1 for its current state),
// agifarm_model_loads_total{model}, agifarm_model_evictions_total{model}, agifarm_model_unloads_total{model},
// agifarm_model_load_seconds_last{model}, agifarm_model_load_seconds_total{model}.
std::string render_models(const std::vector<model_status>& models);

// The memory series: agifarm_backend_memory_predicted_bytes{backend,model,node,device,buffer} and
// agifarm_backend_memory_measured_bytes{...} (buffer: model | kv | compute), and
// agifarm_backend_memory_diff_bytes{backend,model,node,device} (measured - predicted, all buffers; only
// where both are known). Nothing when there are no rows.
std::string render_memory(const std::vector<memory_row>& rows);

// Escapes a label value for the text format (backslash, double quote, newline).
std::string prometheus_escape(std::string_view v);

}  // namespace agifarm::gateway
