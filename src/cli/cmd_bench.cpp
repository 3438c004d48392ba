// agifarm bench [--farm farm.yaml | --url URL] [--workload chat|agents|long|mix] [--duration S]
//               [--concurrency N] [--out DIR] [--json]
// agifarm bench --plan plan.json --strategies
// Drives a running farm's OpenAI endpoint with streaming load and reports TTFT / ITL / e2e percentiles
// and tokens/s per pool (bench/driver.hpp, bench/report.hpp); or runs each feasible strategy of a plan
// on this machine and prints measured beside predicted tokens/s (bench/strategies.hpp).
#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "bench/driver.hpp"
#include "bench/report.hpp"
#include "bench/strategies.hpp"
#include "cli/commands.hpp"
#include "farm/farm_file.hpp"
#include "farm/state.hpp"

namespace agifarm::cli {
namespace {

struct bench_flags {
  std::string farm_file, url, workload = "mix", out = "agifarm-bench", api_key, plan_file, llama_bin;
  double duration = 30;
  int concurrency = 0;  // 0: not given (4; with --strategies each candidate's agents)
  bool json = false, strategies = false;
  std::vector<std::string> models;
  std::uint64_t seed = 1;
  double timeout = 120;
  std::size_t max_requests = 0;
};

[[noreturn]] void fail(const error& e) {
  std::cerr << "agifarm bench: " << e.message << '\n';
  throw CLI::RuntimeError(e.exit_code == 0 ? 1 : e.exit_code);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Where the farm is: --url, else the farm file's running farm (its state dir's farm.json) or its
// listen address, else the default state dir's running farm, else http://127.0.0.1:8080.
result<bench::endpoint> find_endpoint(const bench_flags& f) {
  std::string api_key = f.api_key;
  if (api_key.empty())
    if (const char* k = std::getenv("AGIFARM_API_KEY")) api_key = k;
  auto with_key = [&](result<bench::endpoint> ep) {
    if (ep) ep->api_key = api_key;
    return ep;
  };
  if (!f.url.empty()) return with_key(bench::parse_url(f.url));
  std::string state_dir = farm::default_state_dir(), listen;
  if (!f.farm_file.empty()) {
    auto ff = farm::load_farm_file(f.farm_file);
    if (!ff) return make_error(ff.err().message, 2);
    if (!ff->state_dir.empty()) state_dir = ff->state_dir;
    if (ff->gateway.listen_port > 0) {
      const auto& h = ff->gateway.listen_host;
      bool any = h.empty() || h == "0.0.0.0" || h == "::";
      listen = fmt::format("{}:{}",
                           any                                ? "127.0.0.1"
                           : h.find(':') != std::string::npos ? "[" + h + "]"
                                                              : h,
                           ff->gateway.listen_port);
    }
    if (api_key.empty() && !ff->gateway.api_keys.empty()) api_key = ff->gateway.api_keys.front().key;
  }
  if (auto st = farm::farm_state_from_json(read_text(state_dir + "/farm.json")); st && !st->endpoint.empty())
    return with_key(bench::parse_url(st->endpoint));
  if (!listen.empty()) return with_key(bench::parse_url("http://" + listen));
  if (!f.farm_file.empty())
    return make_error(
        fmt::format("{}: no running farm (no endpoint in {}/farm.json); start it with `agifarm up {}`",
                    f.farm_file, state_dir, f.farm_file),
        1);
  return with_key(bench::parse_url("http://127.0.0.1:8080"));
}

void run(const bench_flags& f) {
  auto kind = bench::parse_workload(f.workload);
  if (!kind) fail(make_error("--workload: " + kind.err().message, 2));
  bench::workload_options w;
  w.kind = *kind;
  w.seed = f.seed;
  auto timeout = std::chrono::milliseconds(static_cast<long long>(f.timeout * 1000));
  if (f.strategies) {
    if (f.plan_file.empty()) fail(make_error("--strategies needs --plan plan.json", 2));
    bench::strategies_options so;
    so.plan_file = f.plan_file;
    so.llama_bin = f.llama_bin;
    so.workload = w;
    so.duration_s = f.duration;
    so.concurrency = f.concurrency;
    so.request_timeout = timeout;
    so.max_requests = f.max_requests;
    so.work_dir = f.out + "/strategies";
    auto r = bench::run_strategies(so, std::cerr);
    if (!r) fail(r.err());
    if (f.json)
      std::cout << boost::json::serialize(boost::json::object{{"strategies", bench::to_json(*r)}}) << '\n';
    else
      std::cout << bench::format_strategies(*r);
    bool bad = std::any_of(r->begin(), r->end(), [](const auto& s) { return !s.error.empty(); });
    bool ran = std::any_of(r->begin(), r->end(), [](const auto& s) { return s.ran; });
    if (bad || !ran) throw CLI::RuntimeError(1);
    return;
  }
  if (!f.plan_file.empty()) fail(make_error("--plan is used with --strategies", 2));
  auto ep = find_endpoint(f);
  if (!ep) fail(ep.err());
  bench::bench_options o;
  o.ep = *ep;
  o.workload = w;
  o.duration_s = f.duration;
  o.concurrency = f.concurrency > 0 ? f.concurrency : 4;
  o.request_timeout = timeout;
  o.models = f.models;
  o.max_requests = f.max_requests;
  if (!f.json)
    std::cerr << fmt::format("agifarm bench: {} for {} s, {} concurrent, against {}\n", f.workload,
                             f.duration, o.concurrency, ep->url());
  auto r = bench::run_bench(o);
  if (!r) fail(r.err());
  auto path = bench::write_report(*r, f.out);
  if (!path) fail(path.err());
  if (f.json) {
    std::cout << boost::json::serialize(bench::to_json(*r)) << '\n';
  } else {
    std::cout << bench::format_table(*r);
    std::cout << fmt::format("report: {} (data: {}/bench.json)\n", *path, f.out);
  }
  if (r->sum.total.ok == 0) {
    std::cerr << "agifarm bench: no request succeeded";
    for (const auto& rec : r->records)
      if (!rec.ok) {
        std::cerr << fmt::format(" (first error: {} {})", rec.error, rec.error_detail.substr(0, 300));
        break;
      }
    std::cerr << '\n';
    throw CLI::RuntimeError(1);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  static bench_flags f;
  auto* cmd =
      app.add_subcommand("bench",
                         "Drive a running farm with realistic streaming load (chat, agents with shared "
                         "prefixes, long context) and report TTFT, inter-token latency and tokens/s per "
                         "pool; or run a plan's strategies one after another and measure each");
  auto* farm_opt =
      cmd->add_option("--farm", f.farm_file, "the farm file of the running farm (its endpoint and API key)")
          ->check(CLI::ExistingFile);
  cmd->add_option("--url", f.url, "the farm's endpoint, e.g. http://127.0.0.1:8080")->excludes(farm_opt);
  cmd->add_option("--workload", f.workload, "chat | agents | long | mix (default mix)");
  cmd->add_option("--duration", f.duration, "seconds of load (default 30)")->check(CLI::Range(0.1, 86400.0));
  cmd->add_option("--concurrency", f.concurrency,
                  "streams in flight (default 4; with --strategies: each candidate's agents)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--out", f.out, "directory for bench.json and report.html (default ./agifarm-bench)");
  cmd->add_flag("--json", f.json, "print the results as JSON");
  cmd->add_option("--model", f.models,
                  "send every request to this model or alias (repeatable; default: fast / code / "
                  "think for chat / agents / long when the farm has them, else every pool)");
  cmd->add_option("--api-key", f.api_key, "API key (default $AGIFARM_API_KEY, or the farm file's first key)");
  cmd->add_option("--seed", f.seed, "workload seed (same seed, same requests)");
  cmd->add_option("--timeout", f.timeout, "seconds per request before it counts as a timeout (default 120)")
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_option("--max-requests", f.max_requests,
                  "stop sending after this many requests (default: no limit)");
  cmd->add_option("--plan", f.plan_file, "with --strategies: the plan (JSON from `agifarm plan --json`)");
  cmd->add_flag("--strategies", f.strategies,
                "run each feasible strategy of --plan on this machine, measure it, "
                "print measured beside predicted tokens/s");
  cmd->add_option("--llama-bin", f.llama_bin, "with --strategies: directory with llama-server");
  cmd->callback([] { run(f); });
}

}  // namespace agifarm::cli
