#include "bench/strategies.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <set>
#include <thread>

#include "farm/state.hpp"

extern char** environ;

namespace agifarm::bench {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

// llama-server flags that place the model on devices; a `cpu` candidate drops them (value-taking ones
// with their value).
const std::set<std::string> k_placement_with_value{"-ngl",
                                                   "--n-gpu-layers",
                                                   "--gpu-layers",
                                                   "-ts",
                                                   "--tensor-split",
                                                   "-sm",
                                                   "--split-mode",
                                                   "-mg",
                                                   "--main-gpu",
                                                   "-ot",
                                                   "--override-tensor",
                                                   "--rpc",
                                                   "-ncmoe",
                                                   "--n-cpu-moe",
                                                   "-dev",
                                                   "--device",
                                                   "-c",
                                                   "--ctx-size",
                                                   "-np",
                                                   "--parallel"};
const std::set<std::string> k_placement_flags{"-cmoe", "--cpu-moe"};

int role_ctx(const plan::plan_document& doc, const std::string& model) {
  int ctx = 0;
  for (const auto& r : doc.roles)
    if (r.model == model) ctx = std::max(ctx, r.ctx);
  return ctx > 0 ? ctx : 4096;
}

std::vector<std::string> roles_of(const plan::plan_document& doc, const std::string& model) {
  std::vector<std::string> out;
  for (const auto& r : doc.roles)
    if (r.model == model) out.push_back(r.name);
  return out;
}

struct proc_result {
  int exit_code = -1;
  bool timed_out = false;
  std::string output;
};

// Runs argv to completion (stdout and stderr to log_path), killing it after timeout.
proc_result run_process(const std::vector<std::string>& argv, const std::string& log_path,
                        std::chrono::seconds timeout) {
  proc_result r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    r.output = fmt::format("cannot start {}: {}", argv[0], std::strerror(rc));
    return r;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(50ms);  // polling a child we cannot wait on with a deadline otherwise
  }
  if (!r.timed_out) r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  std::ifstream in(log_path);
  r.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

bool alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(f, s);
  auto rp = s.rfind(')');
  return rp == std::string::npos || rp + 2 >= s.size() || (s[rp + 2] != 'Z' && s[rp + 2] != 'X');
}

std::string tail(const std::string& s, std::size_t n = 1500) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

}  // namespace

result<plan::deployment> deployment_for_candidate(const plan::plan_document& doc, std::size_t i) {
  if (i >= doc.candidates.size()) return make_error(fmt::format("no candidate {}", i), 2);
  const auto& c = doc.candidates[i];
  if (!c.feasible) return make_error(fmt::format("not feasible: {}", c.why_not), 2);
  if (c.strategy == "hybrid" || static_cast<int>(i) == doc.recommendation.candidate) {
    if (doc.chosen.backends.empty()) return make_error("the plan has no deployment", 2);
    return doc.chosen;
  }
  if (c.strategy != "cpu")
    return make_error(
        fmt::format("the plan carries command lines for its recommended deployment only, not for this {} "
                    "candidate",
                    c.strategy),
        2);
  const plan::backend_spec* tmpl = nullptr;
  for (const auto& b : doc.chosen.backends)
    if (b.kind == plan::backend_kind::llama_server && b.model == c.model) {
      tmpl = &b;
      break;
    }
  std::string file;
  for (const auto& m : doc.models)
    if (m.name == c.model) file = m.file;
  if (!tmpl && file.empty())
    return make_error(fmt::format("the plan names no file for model {}", c.model), 2);
  int agents = std::max(1, c.agents);
  int ctx = role_ctx(doc, c.model);
  if (c.max_ctx > 0) ctx = std::min(ctx, c.max_ctx);
  plan::backend_spec b;
  b.name = c.model + "-cpu";
  b.model = c.model;
  b.model_file = tmpl ? tmpl->model_file : file;
  if (tmpl) {
    for (std::size_t k = 0; k < tmpl->args.size(); ++k) {
      if (k_placement_with_value.count(tmpl->args[k])) {
        ++k;
        continue;
      }
      if (k_placement_flags.count(tmpl->args[k])) continue;
      b.args.push_back(tmpl->args[k]);
    }
    for (const auto& [k, v] : tmpl->env)
      if (k.find("VISIBLE_DEVICES") == std::string::npos) b.env[k] = v;
  } else {
    b.args = {"-m", file};
  }
  for (const auto& a : {std::string("-c"), std::to_string(ctx * agents), std::string("-np"),
                        std::to_string(agents), std::string("-ngl"), std::string("0")})
    b.args.push_back(a);
  b.slots = agents;
  b.ctx = ctx * agents;
  plan::deployment d;
  d.strategy = "cpu";
  plan::pool_spec pool;
  pool.name = c.model;
  pool.aliases = roles_of(doc, c.model);
  pool.backends = {b.name};
  pool.balance = agents > 1 ? plan::balance_policy::prefix_affinity : plan::balance_policy::least_outstanding;
  d.backends.push_back(std::move(b));
  d.pools.push_back(std::move(pool));
  return d;
}

result<std::vector<strategy_outcome>> run_strategies(const strategies_options& o, std::ostream& progress) {
  std::ifstream in(o.plan_file, std::ios::binary);
  if (!in) return make_error(fmt::format("--plan {}: cannot read the file", o.plan_file), 2);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto doc = plan::parse_plan_document(text);
  if (!doc) return make_error(fmt::format("--plan {}: {}", o.plan_file, doc.err().message), 2);
  bool any =
      std::any_of(doc->candidates.begin(), doc->candidates.end(), [](const auto& c) { return c.feasible; });
  if (!any)
    return make_error(
        fmt::format("--plan {}: no feasible strategy to run (the plan has {} candidates, none fits)",
                    o.plan_file, doc->candidates.size()),
        2);
  std::string exe = o.agifarm_exe;
  if (exe.empty()) {
    std::error_code ec;
    exe = fs::read_symlink("/proc/self/exe", ec).string();
    if (ec) return make_error("cannot find the agifarm binary (/proc/self/exe)", 1);
  }
  std::string work = o.work_dir;
  if (work.empty()) {
    auto base = fs::temp_directory_path() / fmt::format("agifarm-bench-strategies-{}", ::getpid());
    work = base.string();
  }
  std::error_code ec;
  fs::create_directories(work, ec);
  if (ec) return make_error(fmt::format("cannot create {}: {}", work, ec.message()), 1);

  std::vector<strategy_outcome> out;
  for (std::size_t i = 0; i < doc->candidates.size(); ++i) {
    const auto& c = doc->candidates[i];
    if (!c.feasible) continue;
    strategy_outcome so;
    so.model = c.model;
    so.strategy = c.strategy;
    so.summary = c.summary;
    so.predicted_decode_tps = c.decode_tps;
    so.predicted_aggregate_tps = c.aggregate_decode_tps;
    so.predicted_prefill_tps = c.prefill_tps;
    auto dep = deployment_for_candidate(*doc, i);
    if (!dep) {
      so.skipped = dep.err().message;
      progress << fmt::format("agifarm bench: {} {}: skipped: {}\n", c.model, c.strategy, so.skipped);
      out.push_back(std::move(so));
      continue;
    }
    int slots = 0;
    for (const auto& b : dep->backends) slots += b.kind == plan::backend_kind::llama_server ? b.slots : 0;
    so.concurrency = o.concurrency > 0 ? o.concurrency : std::max(1, std::max(c.agents, slots));
    auto dir =
        (fs::path(work) / fmt::format("{}-{}-{}", i, c.model == "*" ? "all" : c.model, c.strategy)).string();
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    auto plan_path = dir + "/plan.json";
    {
      std::ofstream f(plan_path);
      f << json::serialize(json::object{{"deployment", plan::to_json(*dep)}});
    }
    auto state_dir = dir + "/state";
    progress << fmt::format("agifarm bench: {} {}: starting the farm ({})\n", c.model, c.strategy, c.summary)
             << std::flush;
    std::vector<std::string> up{exe,           "up",      "--detach", "--plan",     plan_path,
                                "--state-dir", state_dir, "--listen", "127.0.0.1:0"};
    if (!o.llama_bin.empty()) {
      up.push_back("--llama-bin");
      up.push_back(o.llama_bin);
    }
    auto upr = run_process(up, dir + "/up.log", std::chrono::seconds(o.up_timeout_s));
    // Whatever happened, the farm is stopped before the next strategy (a failed `up` leaves nothing
    // by its own contract; `down` then answers "not running").
    auto stop = [&] {
      auto st = farm::farm_state_from_json([&] {
        std::ifstream f(state_dir + "/farm.json");
        return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      }());
      if (st) {
        so.pids.push_back(st->supervisor_pid);
        for (const auto& b : st->backends) so.pids.push_back(b.pid);
      }
      run_process({exe, "down", "--state-dir", state_dir, "--timeout", "30"}, dir + "/down.log", 90s);
      auto deadline = std::chrono::steady_clock::now() + 15s;
      auto left = [&] { return std::any_of(so.pids.begin(), so.pids.end(), [](int p) { return alive(p); }); };
      while (left() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
      if (left()) {
        so.processes_left = true;
        for (int p : so.pids)
          if (alive(p)) ::kill(p, SIGKILL);
        if (so.error.empty()) so.error = "processes were left after `agifarm down` (killed)";
      }
    };
    if (upr.exit_code != 0) {
      so.error =
          fmt::format("the farm did not start ({}): {}",
                      upr.timed_out ? "timed out" : fmt::format("exit {}", upr.exit_code), tail(upr.output));
      stop();
      out.push_back(std::move(so));
      continue;
    }
    std::ifstream sf(state_dir + "/farm.json");
    std::string stext((std::istreambuf_iterator<char>(sf)), std::istreambuf_iterator<char>());
    auto st = farm::farm_state_from_json(stext);
    result<endpoint> ep = st ? parse_url(st->endpoint) : result<endpoint>(st.err());
    if (!ep) {
      so.error =
          fmt::format("cannot find the farm's endpoint in {}/farm.json: {}", state_dir, ep.err().message);
      stop();
      out.push_back(std::move(so));
      continue;
    }
    progress << fmt::format("agifarm bench: {} {}: {} s of {} at concurrency {} against {}\n", c.model,
                            c.strategy, o.duration_s, workload_name(o.workload.kind), so.concurrency,
                            ep->url())
             << std::flush;
    bench_options bo;
    bo.ep = *ep;
    bo.workload = o.workload;
    bo.duration_s = o.duration_s;
    bo.concurrency = so.concurrency;
    bo.request_timeout = o.request_timeout;
    bo.max_requests = o.max_requests;
    bo.every_pool = true;  // a hybrid's every model gets its share, whatever its roles
    auto run = run_bench(bo);
    if (!run) {
      so.error = run.err().message;
    } else {
      so.ran = true;
      const auto& t = run->sum.total;
      so.requests = t.requests;
      so.errors = t.requests - t.ok;
      so.prompt_tokens = t.prompt_tokens;
      so.completion_tokens = t.completion_tokens;
      so.measured_generated_tps = t.completion_tps;
      so.measured_prompt_tps = t.prompt_tps;
      so.measured_stream_tps = t.itl.mean > 0 ? 1.0 / t.itl.mean : 0;
    }
    stop();
    out.push_back(std::move(so));
  }
  return out;
}

std::string format_strategies(const std::vector<strategy_outcome>& r) {
  std::string out =
      fmt::format("{:<14} {:<15} {:>5} {:>9} {:>7} {:>24} {:>24}  {}\n", "model", "strategy", "conc",
                  "requests", "errors", "stream tok/s meas/pred", "total tok/s meas/pred", "");
  for (const auto& s : r) {
    if (!s.ran) {
      out += fmt::format("{:<14} {:<15} {}\n", s.model, s.strategy,
                         s.skipped.empty() ? "failed: " + s.error : "skipped: " + s.skipped);
      continue;
    }
    out += fmt::format("{:<14} {:<15} {:>5} {:>9} {:>7} {:>24} {:>24}  {}\n", s.model, s.strategy,
                       s.concurrency, s.requests, s.errors,
                       fmt::format("{:.1f} / {:.1f}", s.measured_stream_tps, s.predicted_decode_tps),
                       fmt::format("{:.1f} / {:.1f}", s.measured_generated_tps, s.predicted_aggregate_tps),
                       s.error.empty() ? s.summary : s.error);
  }
  return out;
}

json::array to_json(const std::vector<strategy_outcome>& r) {
  json::array a;
  for (const auto& s : r) {
    json::object o{{"model", s.model},
                   {"strategy", s.strategy},
                   {"summary", s.summary},
                   {"ran", s.ran},
                   {"concurrency", s.concurrency},
                   {"requests", s.requests},
                   {"errors", s.errors},
                   {"prompt_tokens", s.prompt_tokens},
                   {"completion_tokens", s.completion_tokens},
                   {"predicted_decode_tps", s.predicted_decode_tps},
                   {"predicted_aggregate_decode_tps", s.predicted_aggregate_tps},
                   {"predicted_prefill_tps", s.predicted_prefill_tps},
                   {"measured_stream_tps", s.measured_stream_tps},
                   {"measured_generated_tps", s.measured_generated_tps},
                   {"measured_prompt_tps", s.measured_prompt_tps},
                   {"processes_left", s.processes_left}};
    if (!s.skipped.empty()) o["skipped"] = s.skipped;
    if (!s.error.empty()) o["error"] = s.error;
    json::array pids;
    for (int p : s.pids) pids.push_back(p);
    o["pids"] = std::move(pids);
    a.push_back(std::move(o));
  }
  return a;
}

}  // namespace agifarm::bench
