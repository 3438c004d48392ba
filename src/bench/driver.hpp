// driver: runs a bench against one farm endpoint: discovers its pools and aliases (GET /v1/models),
// chooses what each workload part sends to, keeps `concurrency` streaming requests in flight for
// `duration_s` seconds (then waits for the ones in flight), and sums up what it measured.
//
// run_bench blocks the calling thread (its own io_context, one thread: the workload is not shared).
// Errors (exit code 1: the farm cannot be reached or answers /v1/models wrongly; 2: bad options) name
// the URL. Requests that fail during the run are not errors of run_bench: they are counted by kind.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "bench/client.hpp"
#include "bench/stats.hpp"
#include "bench/workload.hpp"
#include "common/result.hpp"

namespace agifarm::bench {

struct bench_options {
  endpoint ep;
  workload_options workload;
  double duration_s = 30;
  int concurrency = 4;
  std::chrono::milliseconds request_timeout{120000};
  std::vector<std::string> models;  // send every part to these (round robin); empty: see choose_targets
  std::size_t max_requests = 0;     // stop issuing after this many (0 = no limit; the duration still applies)
  bool every_pool = false;          // every part to every pool in turn (ignores role aliases)
};

// The farm's models as /v1/models lists them: every id and the pool it belongs to (its `root`).
struct farm_models {
  std::map<std::string, std::string> pool_of;  // id (pool or alias) -> pool
  std::vector<std::string> pools;              // pool names, in the listed order
};
result<farm_models> parse_models(std::string_view body);

// What each workload part sends to: the given models, else chat -> alias `fast`, agents -> `code`,
// long -> `think` when the farm has them, else every pool in turn. Unknown given models: error.
result<workload_targets> choose_targets(const farm_models& m, const std::vector<std::string>& models);

struct bench_run {
  std::string url;
  std::string workload;
  double duration_s = 0;
  int concurrency = 0;
  std::uint64_t seed = 0;
  std::string started_utc;  // ISO 8601
  workload_targets targets;
  std::vector<request_record> records;
  summary sum;
};

result<bench_run> run_bench(const bench_options& o);

boost::json::object to_json(const bench_run& r);

}  // namespace agifarm::bench
