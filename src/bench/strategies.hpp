// strategies: `agifarm bench --plan plan.json --strategies` — runs each feasible strategy of a plan on this
// machine, one after another: start a farm with it (the agifarm binary's own `up --detach`, in a private
// state directory, gateway on a free loopback port), bench it for a fixed short workload, stop it (`down`),
// check that none of its processes is left, and report measured beside predicted tokens/s.
//
// Which deployment runs a candidate: the plan carries command lines for its chosen deployment only, so
//   - the candidate the plan recommends (and the hybrid of a multi-model plan) runs doc.deployment as is;
//   - a candidate whose model and strategy match a backend of that deployment runs those backends;
//   - a `cpu` candidate is derived from the plan's backend of its model (or its model file): one
//     llama-server with -ngl 0, -np = its agents, -c = agents x its role context, placement flags dropped;
//   - any other strategy is listed as skipped, with the reason (its command lines are not in the plan).
//
// Blocks the calling thread; spawns and reaps child processes (call with no farm of the same state dir).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "bench/driver.hpp"
#include "common/result.hpp"
#include "plan/plan_document.hpp"

namespace agifarm::bench {

struct strategies_options {
  std::string plan_file;
  std::string agifarm_exe;    // the agifarm binary (default: this process's /proc/self/exe)
  std::string llama_bin;      // passed to `up --llama-bin` when not empty
  std::string work_dir;       // state directories go here ("" = a fresh directory under $TMPDIR)
  workload_options workload;  // the fixed workload of every strategy
  double duration_s = 10;
  int concurrency = 0;  // 0: the candidate's agents
  std::size_t max_requests = 0;
  std::chrono::milliseconds request_timeout{60000};
  int up_timeout_s = 300;
};

struct strategy_outcome {
  std::string model, strategy, summary;
  bool ran = false;
  std::string skipped;  // why it did not run (ran = false)
  std::string error;    // ran but failed (farm did not start, bench failed, processes left)
  double predicted_decode_tps = 0, predicted_aggregate_tps = 0, predicted_prefill_tps = 0;
  double measured_generated_tps = 0;  // all streams together
  double measured_stream_tps = 0;     // one stream: 1 / mean inter-token latency
  double measured_prompt_tps = 0;
  int concurrency = 0;
  std::uint64_t requests = 0, errors = 0, prompt_tokens = 0, completion_tokens = 0;
  bool processes_left = false;
  std::vector<int> pids;  // the farm's processes (supervisor and backends), all gone after `down`
};

// The deployment that runs candidate i of the plan on this machine, or the reason there is none.
result<plan::deployment> deployment_for_candidate(const plan::plan_document& doc, std::size_t i);

// Errors (exit code 2): the plan file cannot be read or parsed, or it has no feasible candidate.
result<std::vector<strategy_outcome>> run_strategies(const strategies_options& o, std::ostream& progress);

std::string format_strategies(const std::vector<strategy_outcome>& r);
boost::json::array to_json(const std::vector<strategy_outcome>& r);

}  // namespace agifarm::bench
