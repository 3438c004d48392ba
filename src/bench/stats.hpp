// stats: what the bench measures and how it sums it up. Pure functions and plain data; thread-safe.
//
// A request_record is one finished request as the client saw it (times in seconds from the bench's
// start). summarize() groups records by pool and computes, per pool and for all pools together:
// requests, errors by kind, TTFT / inter-token latency / end-to-end latency percentiles (p50/p95/p99,
// linear interpolation between closest ranks, as numpy's default), prompt and generated tokens per
// second over the measured wall time, and a per-second time series for the plots.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace agifarm::bench {

struct request_record {
  std::string pool;    // the gateway pool that served it ("" = unknown model)
  std::string model;   // the name the request asked for (pool or alias)
  std::string kind;    // workload part: chat | agents | long
  double start_s = 0;  // sent, seconds since the bench started
  double end_s = 0;    // last byte or failure
  bool ok = false;
  std::string error;  // "" when ok; else its kind: connect, timeout, http_<status>, stream, backend
  std::string error_detail;
  double ttft_s = -1;                                      // first generated text; -1 when none arrived
  std::vector<double> itl_s;                               // gaps between successive chunks carrying text
  std::uint64_t prompt_tokens = 0, completion_tokens = 0;  // from the final chunk (usage / timings)
  std::size_t chunks = 0;                                  // chunks with text
};

// Percentile q in [0, 100] of values (need not be sorted); 0 for an empty set.
double percentile(std::vector<double> values, double q);

struct distribution {
  std::size_t count = 0;
  double mean = 0, min = 0, max = 0, p50 = 0, p95 = 0, p99 = 0;
};
distribution distribution_of(const std::vector<double>& values);

struct series_point {
  double t = 0;  // second bucket start
  std::uint64_t requests = 0, errors = 0, prompt_tokens = 0, completion_tokens = 0;
};

struct pool_summary {
  std::string pool;
  std::uint64_t requests = 0;  // sent and finished (ok or not)
  std::uint64_t ok = 0;
  std::map<std::string, std::uint64_t> errors;  // kind -> count
  distribution ttft, itl, e2e;                  // seconds; e2e and ttft of ok requests
  std::uint64_t prompt_tokens = 0, completion_tokens = 0;
  double prompt_tps = 0, completion_tps = 0;  // tokens over the bench's wall time
  double requests_per_s = 0;
  std::vector<series_point> series;  // one point per second of wall time
};

struct summary {
  double wall_s = 0;
  std::vector<pool_summary> pools;  // by pool name
  pool_summary total;               // pool "all"
};

// wall_s: the measured wall time (> 0); records finishing after it still count (in-flight requests are
// awaited at the end), their series bucket is clamped to the last second.
summary summarize(const std::vector<request_record>& records, double wall_s);

boost::json::object to_json(const distribution& d);
boost::json::object to_json(const pool_summary& p);
boost::json::object to_json(const summary& s);

}  // namespace agifarm::bench
