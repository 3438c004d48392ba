#include "farm/runner.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>

#include "common/format.hpp"
#include "farm/farm_file.hpp"
#include "farm/gateway_config.hpp"
#include "farm/memory_feedback.hpp"
#include "farm/nodes.hpp"
#include "farm/on_demand.hpp"
#include "farm/sources.hpp"
#include "farm/state.hpp"
#include "gateway/config.hpp"
#include "gateway/gateway.hpp"
#include "hw/hw.hpp"
#include "remote/remote.hpp"
#include "supervise/supervisor.hpp"

namespace agifarm::farm {

// Defined in control.cpp.
int kill_leftovers(const farm_state& s, std::ostream& out);
void print_running_farm(const farm_paths& paths, std::ostream& out);
void stop_recorded_nodes(const farm_state& s, std::ostream& out);

namespace {
namespace fs = std::filesystem;
using supervise::backend_state;

constexpr const char* k_exit_marker = "@@agifarm-up-exit ";

// Output of `up`: the terminal in the foreground; in a daemon, the pipe to the waiting parent (until
// start-up is over) and the daemon log (stdout, redirected).
class reporter {
 public:
  reporter(std::ostream& out, int pipe_fd) : out_(out), pipe_(pipe_fd) {}
  void say(const std::string& line) {
    out_ << line << '\n';
    out_.flush();
    if (pipe_ >= 0) write_pipe(line + "\n");
  }
  void finish_startup(int code) {
    if (pipe_ < 0) return;
    write_pipe(fmt::format("{}{}\n", k_exit_marker, code));
    ::close(pipe_);
    pipe_ = -1;
  }

 private:
  void write_pipe(const std::string& s) {
    const char* p = s.data();
    size_t n = s.size();
    while (n > 0) {
      ssize_t w = ::write(pipe_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ::close(pipe_);
        pipe_ = -1;
        return;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  std::ostream& out_;
  int pipe_;
};

supervise::supervisor_options make_options(const std::optional<farm_file>& ff, const std::string& llama_bin,
                                           const farm_paths& paths) {
  supervise::supervisor_options o;
  o.llama_bin = llama_bin;
  o.log_dir = paths.logs();
  if (!ff) return o;
  auto ms = [](double s) { return supervise::duration(static_cast<std::int64_t>(s * 1000)); };
  const auto& s = ff->supervisor;
  if (s.start_timeout_s) o.start_timeout = ms(*s.start_timeout_s);
  if (s.failure_window_s) o.failure_window = ms(*s.failure_window_s);
  if (s.backoff_initial_s) o.backoff_initial = ms(*s.backoff_initial_s);
  if (s.backoff_cap_s) o.backoff_cap = ms(*s.backoff_cap_s);
  if (s.healthy_reset_s) o.healthy_reset = ms(*s.healthy_reset_s);
  if (s.health_interval_s) o.health_interval_ready = ms(*s.health_interval_s);
  if (s.probe_interval_s) o.probe_interval = ms(*s.probe_interval_s);
  if (s.probe_timeout_s) o.probe_timeout = ms(*s.probe_timeout_s);
  if (s.stop_timeout_s) o.stop_timeout = ms(*s.stop_timeout_s);
  if (s.max_failures) o.max_failures = *s.max_failures;
  if (s.log_keep) o.log_keep = *s.log_keep;
  if (s.log_max_mb) o.log_max_bytes = static_cast<std::uint64_t>(*s.log_max_mb * 1024 * 1024);
  return o;
}

std::uint64_t predicted_total(const plan::backend_spec& b) {
  if (!b.predicted) return 0;
  std::uint64_t t = b.predicted->host.total_bytes;
  for (const auto& d : b.predicted->devices) t += d.total_bytes;
  return t;
}

// Every backend of the farm as a record: this machine's from the supervisor, remote ones as their node
// last reported them (a node not heard from yet: its backends "starting").
std::vector<backend_record> local_records(const supervise::supervisor& sup) {
  std::vector<backend_record> out;
  const auto& specs = sup.deployment().backends;
  for (std::size_t i = 0; i < sup.backends().size(); ++i) {
    const auto& b = sup.backends()[i];
    const auto& spec = specs[i];
    backend_record r;
    r.name = b.name;
    r.kind = plan::to_string(b.kind);
    r.model = spec.model;
    r.host = b.host;
    r.port = b.port;
    r.pid = b.pid;
    r.state = supervise::to_string(b.state);
    r.restarts = b.restarts;
    r.reason = b.reason;
    r.last_exit = b.last_exit;
    r.started_wall = b.started_wall;
    r.log_path = b.log_path;
    r.program = b.argv.empty() ? std::string() : b.argv[0];
    r.slots = spec.slots;
    r.predicted_bytes = predicted_total(spec);
    r.predicted_devices = predicted_devices(spec);
    if (r.state == "ready" && r.kind == "llama-server")
      r.measured_devices = measured_devices(r.log_path, r.started_wall);
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<backend_record> all_records(const plan::deployment& all, const std::vector<backend_record>& local,
                                        const std::vector<node_status>& nodes) {
  const auto view = replica_view(all, local, nodes);
  std::map<std::string, const backend_record*> seen;
  for (const auto& r : local) seen[r.name] = &r;
  for (const auto& n : nodes)
    for (const auto& r : n.backends) seen[r.name] = &r;
  std::vector<backend_record> out;
  for (const auto& spec : all.backends) {
    backend_record r;
    if (auto it = seen.find(spec.name); it != seen.end()) {
      r = *it->second;
    } else {
      r.name = spec.name;
      r.kind = plan::to_string(spec.kind);
      r.model = spec.model;
      r.host = spec.host;
      r.port = spec.port;
      r.state = "starting";
    }
    r.node = spec.node.empty() ? "local" : spec.node;
    for (const auto& n : nodes)
      if (n.name == r.node && n.state != "up") {
        r.reason = fmt::format("node {} is {}{}", n.name, n.state, n.error.empty() ? "" : ": " + n.error);
        if (n.state == "unreachable") r.state = "unreachable";
      }
    r.slots = spec.slots;
    r.predicted_bytes = predicted_total(spec);
    r.predicted_devices = predicted_devices(spec);
    // A shard whose rpc server is on a lost node cannot serve either: say why.
    if (auto v = view.find(spec.name); v != view.end() && !v->second.ready && r.reason.empty())
      r.reason = v->second.reason;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<node_record> node_records(const node_fleet* fleet) {
  std::vector<node_record> out;
  if (!fleet) return out;
  auto snap = fleet->snapshot();
  for (std::size_t i = 0; i < fleet->size(); ++i) {
    const auto& n = fleet->node(i);
    const auto& st = snap[i];
    out.push_back({n.name, n.target.text(), n.address, n.agifarm, n.llama_bin, n.state_dir, st.state,
                   st.since_wall, st.error, st.restarts, st.agifarm_version, st.llama_version});
  }
  return out;
}

void print_summary(reporter& rep, const plan::deployment& all, const std::vector<backend_record>& recs,
                   const std::string& endpoint, const std::string& source, const gateway::config& gc) {
  int ready = 0, failed = 0;
  for (const auto& b : recs) {
    ready += b.state == "ready";
    failed += b.state == "failed";
  }
  rep.say(fmt::format("agifarm: farm is up: {} of {} backends ready{} (strategy {}, from {})", ready,
                      recs.size(), failed ? fmt::format(", {} FAILED", failed) : "", all.strategy, source));
  rep.say(fmt::format("  endpoint  {}/v1  (OpenAI-compatible)", endpoint));
  const auto& specs = all.backends;
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < specs.size(); ++i) index[specs[i].name] = i;
  const bool several_nodes = std::any_of(recs.begin(), recs.end(), [](auto& b) { return b.node != "local"; });
  std::string first_alias;
  for (const auto& p : all.pools) {
    if (first_alias.empty()) first_alias = p.aliases.empty() ? p.name : p.aliases.front();
    std::string roles;
    for (const auto& a : p.aliases) roles += (roles.empty() ? "" : ", ") + a;
    rep.say(fmt::format("  model {}{}:", p.name, roles.empty() ? "" : " (roles " + roles + ")"));
    double tps = 0, tps1 = 0;
    for (const auto& name : p.backends) {
      auto i = index.at(name);
      const auto& b = recs[i];
      std::string line =
          fmt::format("    {:<24} {:<8} {}port {:<5}", b.name, b.state,
                      several_nodes ? fmt::format("node {:<8} {} ", b.node, b.host) : "", b.port);
      if (b.pid) line += fmt::format("  pid {}", b.pid);
      if (b.state != "ready" && !b.reason.empty()) line += "  " + b.reason;
      rep.say(line);
      if (specs[i].predicted) {
        tps += specs[i].predicted->aggregate_decode_tps;
        tps1 = std::max(tps1, specs[i].predicted->decode_tps);
      }
    }
    if (tps > 0)
      rep.say(fmt::format("    predicted: {:.0f} tok/s per stream, {:.0f} tok/s with every slot busy", tps1,
                          tps));
    else
      rep.say(
          "    predicted tokens/s: not predicted (this deployment has no planner predictions; see `agifarm "
          "plan`)");
  }
  // Memory per device, as predicted by the plan.
  std::map<std::string, std::uint64_t> per_device;
  for (const auto& s : specs) {
    if (!s.predicted) continue;
    std::string node = s.node.empty() || s.node == "local" ? "" : s.node + "/";
    for (const auto& d : s.predicted->devices) per_device[node + d.name] += d.total_bytes;
    if (s.predicted->host.total_bytes) per_device[node + "host"] += s.predicted->host.total_bytes;
  }
  std::uint64_t rss = 0;
  for (const auto& b : recs) rss += b.node == "local" ? supervise::process_rss_bytes(b.pid) : b.rss_bytes;
  std::string mem;
  for (const auto& [d, bytes] : per_device)
    mem += fmt::format("{}{} {}", mem.empty() ? "" : ", ", d, human_bytes(bytes));
  rep.say(fmt::format("  memory    predicted: {}; in use now (RSS of all backends): {}",
                      mem.empty() ? "not predicted" : mem, human_bytes(rss)));
  std::string auth = gc.api_keys.empty() ? "" : " -H \"Authorization: Bearer $AGIFARM_KEY\"";
  std::string key = gc.api_keys.empty() ? "\"none\"" : "os.environ[\"AGIFARM_KEY\"]";
  rep.say("  try it:");
  rep.say(fmt::format("    curl -s {}/v1/chat/completions -H 'Content-Type: application/json'{} \\", endpoint,
                      auth));
  rep.say(fmt::format(
      R"(      -d '{{"model":"{}","messages":[{{"role":"user","content":"Hello"}}],"max_tokens":32}}')",
      first_alias));
  rep.say(fmt::format(
      R"(    python3 -c 'import os; from openai import OpenAI; c = OpenAI(base_url="{}/v1", api_key={}); )"
      R"(print(c.chat.completions.create(model="{}", max_tokens=32, messages=[{{"role":"user","content":"Hello"}}]).choices[0].message.content)')",
      endpoint, key, first_alias));
  std::string node_key = gc.api_keys.empty() ? "\"none\"" : "process.env.AGIFARM_KEY";
  rep.say(fmt::format(
      R"(    node -e 'const OpenAI=require("openai"); new OpenAI({{baseURL:"{}/v1",apiKey:{}}}).chat.completions.create({{model:"{}",max_tokens:32,messages:[{{role:"user",content:"Hello"}}]}}).then(r=>console.log(r.choices[0].message.content))')",
      endpoint, node_key, first_alias));
  rep.say(several_nodes ? "  agifarm status | agifarm logs NODE/NAME | agifarm down"
                        : "  agifarm status | agifarm logs NAME | agifarm down");
}

// Blocks the signals run_up waits for; every thread created afterwards inherits the mask.
sigset_t block_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1}) sigaddset(&set, s);
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGCHLD, &sa, nullptr);  // a handler (never run: blocked) keeps SIGCHLD from being discarded
  ::sigaction(SIGUSR1, &sa, nullptr);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return set;
}

// Waits until `until` or a signal; returns the signal or 0.
int wait_signal(const sigset_t& set, supervise::time_point until) {
  auto d = until - std::chrono::steady_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  ms = std::clamp<long long>(ms, 1, 1000);
  timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1000000)};
  siginfo_t si;
  int s = ::sigtimedwait(&set, &si, &ts);
  return s > 0 ? s : 0;
}

struct resolved {
  std::optional<farm_file> ff;
  std::string plan_text;  // --plan -: read before a daemon detaches from stdin
  farm_paths paths;
  std::string llama_bin;
  gateway::config gateway;
};

result<resolved> resolve(const up_options& o) {
  resolved r;
  if (!o.farm_file.empty()) {
    auto f = load_farm_file(o.farm_file);
    if (!f) return f.err();
    r.ff = std::move(*f);
  }
  r.paths.dir = !o.state_dir.empty()
                    ? o.state_dir
                    : (r.ff && !r.ff->state_dir.empty() ? r.ff->state_dir : default_state_dir());
  if (o.node_mode && o.state_dir.empty()) r.paths.dir = node_state_dir(o.node_name);
  if (o.plan_file == "-")
    r.plan_text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  r.llama_bin = !o.llama_bin.empty()
                    ? o.llama_bin
                    : (r.ff && !r.ff->llama_bin.empty() ? r.ff->llama_bin : default_llama_bin());
  r.gateway = r.ff ? r.ff->gateway : gateway::config{};
  if (!o.listen.empty()) {
    auto hp = gateway::parse_host_port(o.listen);
    if (!hp) return make_error("--listen: " + hp.err().message, 2);
    r.gateway.listen_host = hp->host;
    r.gateway.listen_port = hp->port;
  }
  std::error_code ec;
  if (!fs::exists(r.llama_bin + "/llama-server", ec))
    return make_error(
        fmt::format("llama-server not found in {} (run scripts/setup.sh, set llama_bin in the farm file, "
                    "--llama-bin, or $AGIFARM_LLAMA_BIN)",
                    r.llama_bin));
  for (const auto& d : {r.paths.dir, r.paths.logs()}) {
    auto st = supervise::make_dirs(d);
    if (!st) return st.err();
  }
  return r;
}

// The deployment `up` runs: --plan (a file, or "-" for stdin: a node daemon's part), the farm file
// (planned, or replicas), or the embedded demo.
result<plan::deployment> get_deployment(const up_options& o, resolved& r, reporter& rep,
                                        std::string& source) {
  if (o.plan_file == "-") {
    source = o.node_mode ? "controller (node " + o.node_name + ")" : "stdin";
    return deployment_from_plan_text(r.plan_text, "stdin");
  }
  if (!o.plan_file.empty()) {
    source = o.plan_file;
    return deployment_from_plan_file(o.plan_file);
  }
  if (r.ff) {
    source = r.ff->path;
    const bool forced = !r.ff->strategy.empty() || !r.ff->strategy_per_model.empty();
    if (planner_available() && !forced) {
      rep.say("agifarm: planning " + r.ff->path);
      std::vector<std::string> notes;
      plan::plan_document doc;
      auto p = planned_deployment(*r.ff, notes, r.paths.memory(), &doc);
      for (const auto& n : notes) rep.say("  " + n);
      // Kept for the dashboard's strategy table (farms with on-demand models have no single document).
      if (p && !doc.candidates.empty())
        (void)supervise::write_file_atomic(r.paths.plan(), boost::json::serialize(plan::to_json(doc)) + "\n");
      return p;
    }
    return replica_deployment(*r.ff);
  }
  std::string model = r.paths.models() + "/" + k_demo_model_name + ".gguf";
  auto made = ensure_demo_model(model);
  if (!made) return made.err();
  if (*made) rep.say(fmt::format("agifarm: synthesized the tiny demo model {}", model));
  source = "embedded default";
  return demo_deployment(model);
}

bool has_remote_backends(const plan::deployment& d) {
  return std::any_of(d.backends.begin(), d.backends.end(),
                     [](auto& b) { return !b.node.empty() && b.node != "local"; });
}

// The remote nodes of a multi-node farm: the farm file's inventory says how to reach them.
result<farm_split> split_for_nodes(const plan::deployment& d, const resolved& r) {
  if (!r.ff || r.ff->inventory.empty())
    return make_error(
        "the deployment has backends on other nodes; give the farm file whose `inventory:` says how to "
        "reach them (`agifarm up farm.yaml --plan plan.json`; nodes need `ssh: user@host`)",
        2);
  auto cat = hw::load_default_catalogue();
  if (!cat) return cat.err();
  auto inv = hw::load_inventory(r.ff->inventory, *cat);
  if (!inv) return inv.err();
  return split_farm(d, *inv, make_backend_key(), r.ff->allow_public_bind);
}

// Polls every remote node on a thread of its own until stopped; wakes the main thread on a change.
class node_watch {
 public:
  node_watch(node_fleet& f, std::function<void()> wake, std::chrono::milliseconds every)
      : fleet_(f), wake_(std::move(wake)), every_(every) {
    for (std::size_t i = 0; i < fleet_.size(); ++i)
      threads_.emplace_back([this, i] {
        std::unique_lock lk(mu_);
        while (!stop_) {
          lk.unlock();
          if (fleet_.poll(i)) wake_();
          lk.lock();
          cv_.wait_for(lk, every_, [this] { return stop_; });
        }
      });
  }
  ~node_watch() { stop(); }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  node_fleet& fleet_;
  std::function<void()> wake_;
  std::chrono::milliseconds every_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// The farm itself, after locking (and in the daemon, after detaching).
int serve(const up_options& o, resolved& r, farm_lock& lock, reporter& rep, std::ostream& err) {
  (void)lock;
  const sigset_t sigs = block_signals();
  const pthread_t main_thread = ::pthread_self();
  supervise::system_clock clk;
  const std::int64_t started_wall = clk.wall_now();

  // What a crashed earlier run left behind.
  if (auto text = supervise::read_file(r.paths.state()); text) {
    if (auto old = farm_state_from_json(*text); old) {
      rep.say(fmt::format("agifarm: an earlier farm (pid {}) did not stop cleanly; cleaning up",
                          old->supervisor_pid));
      std::ostringstream os;
      kill_leftovers(*old, os);
      stop_recorded_nodes(*old, os);
      std::istringstream is(os.str());
      for (std::string l; std::getline(is, l);) rep.say("  " + l);
    }
    std::error_code ec;
    fs::remove(r.paths.state(), ec);
  }

  std::string source;
  {
    std::error_code ec;
    fs::remove(r.paths.plan(), ec);  // an earlier farm's plan document; get_deployment writes this one's
  }
  auto got = get_deployment(o, r, rep, source);
  if (!got) {
    err << got.err().message << '\n';
    return got.err().exit_code;
  }
  plan::deployment all = std::move(*got);
  predict_on_this_machine(all);
  log_buffers_at_load(all);  // measured memory: llama-server prints its buffers at load

  // Several machines: split the deployment; the remote nodes' daemons are driven over SSH.
  plan::deployment local = all;
  std::optional<farm_split> split;
  std::unique_ptr<remote::ssh_shell> shell;
  std::unique_ptr<node_fleet> fleet;
  bool local_first = false;
  if (has_remote_backends(all) && !o.node_mode) {
    auto s = split_for_nodes(all, r);
    if (!s) {
      err << s.err().message << '\n';
      return s.err().exit_code;
    }
    split = std::move(*s);
    for (const auto& b : split->all.backends)
      if (b.host == "0.0.0.0" || b.host == "::")
        rep.say(fmt::format(
            "agifarm: WARNING: backend {} on node {} listens on every network ({}): allow_public_bind "
            "is set; anyone who reaches that machine reaches it{}",
            b.name, b.node, b.host,
            b.kind == plan::backend_kind::rpc_server ? " (ggml-rpc-server has no authentication)" : ""));
    all = split->all;
    local = split->local;
    for (const auto& b : split->all.backends)
      for (const auto& dep : b.depends_on)
        for (const auto& lb : local.backends)
          if (lb.name == dep && b.node != "local" && !b.node.empty()) local_first = true;
    remote::ssh_settings ss;
    ss.options = r.ff->ssh_options;
    ss.control_dir = remote::default_control_dir();
    shell = std::make_unique<remote::ssh_shell>(ss);
    fleet = std::make_unique<node_fleet>(split->nodes, split->per_node, *shell);
  }
  // Models on demand (farm file `on_demand: true`): started on their first request, evicted as the
  // memory model says (farm/on_demand.hpp). Refused when even the always-on ones do not fit.
  std::unique_ptr<on_demand_manager> od;
  if (r.ff && has_on_demand(*r.ff) && !o.node_mode) {
    if (fleet) {
      err << "agifarm: on-demand models run on this machine only (the farm has backends on other nodes)\n";
      return 2;
    }
    std::vector<std::string> notes;
    auto cap = local_capacity(*r.ff, notes);
    for (const auto& n : notes) rep.say("agifarm: " + n);
    od = std::make_unique<on_demand_manager>(all, *r.ff, cap,
                                             [main_thread] { ::pthread_kill(main_thread, SIGUSR1); });
    if (auto lines = od->never_fit(); !lines.empty()) {
      err << "agifarm: not starting: these models can never be loaded on this machine:\n";
      for (const auto& l : lines) err << "  " << l << '\n';
      return 3;
    }
    std::string budget;
    for (const auto& [dev, bytes] : cap)
      budget += fmt::format("{}{} {}", budget.empty() ? "" : ", ", dev, mib(bytes));
    rep.say(fmt::format("agifarm: {} backends start on demand; memory budget: {}",
                        od->on_demand_backends().size(), budget.empty() ? "not limited" : budget));
    if (r.ff->on_demand.save_slots) {
      const std::string slots = r.paths.dir + "/slots";
      if (auto st = supervise::make_dirs(slots); st)
        od->save_slots_in(slots, local);
      else
        rep.say("agifarm: prompt caches are not saved: " + st.err().message);
    }
  }
  if (auto st = check_runnable(all, o.node_mode ? runnable_check::node_part
                                    : split     ? runnable_check::multi_node
                                                : runnable_check::this_machine);
      !st) {
    err << st.err().message << '\n';
    return st.err().exit_code;
  }
  for (const auto& b : local.backends) {
    std::error_code ec;
    if (b.kind == plan::backend_kind::llama_server && !b.model_file.empty() && !fs::exists(b.model_file, ec))
      rep.say(
          fmt::format("agifarm: warning: backend {}: model file {} does not exist", b.name, b.model_file));
  }

  supervise::real_ports ports;
  if (!o.node_mode && r.gateway.listen_port != 0 &&
      !ports.is_free(r.gateway.listen_host, r.gateway.listen_port)) {
    err << fmt::format(
        "agifarm: {}:{} is already in use (another program, or a farm with another state "
        "directory); choose another with --listen or `listen:` in the farm file\n",
        r.gateway.listen_host, r.gateway.listen_port);
    return 1;
  }

  supervise::posix_launcher launcher;
  supervise::http_prober prober([main_thread] { ::pthread_kill(main_thread, SIGUSR1); });
  supervise::real_files files;
  std::unique_ptr<gateway::server> gw;
  std::unique_ptr<node_watch> watch;
  std::string endpoint;
  std::string phase = "starting";
  std::unique_ptr<supervise::supervisor> sup;
  auto records = [&] {
    auto loc = local_records(*sup);
    return fleet ? all_records(all, loc, fleet->snapshot()) : loc;
  };
  auto write_state = [&] {
    farm_state st;
    st.supervisor_pid = static_cast<int>(::getpid());
    st.started_wall = started_wall;
    st.phase = phase;
    st.endpoint = endpoint;
    st.strategy = all.strategy;
    st.source = source;
    st.backends = records();
    for (const auto& l : remember_measured_memory(r.paths.memory(), all, st.backends)) rep.say(l);
    for (const auto& p : all.pools) st.pools.push_back({p.name, p.aliases, p.backends});
    st.nodes = node_records(fleet.get());
    if (fleet) st.ssh_options = r.ff->ssh_options;
    if (od) st.models = od->records();
    (void)supervise::write_file_atomic(r.paths.state(), boost::json::serialize(to_json(st)) + "\n");
  };
  bool started_up = false;
  std::set<std::string> tried;  // backends that became ready, crashed or failed at least once
  // What the gateway was last told, per llama-server backend: URL and readiness.
  std::map<std::string, std::pair<std::string, bool>> told;
  auto sync_gateway = [&] {
    if (!gw) return;
    auto view =
        replica_view(all, local_records(*sup), fleet ? fleet->snapshot() : std::vector<node_status>{});
    for (const auto& [name, v] : view) {
      auto& t = told[name];
      // A restart may have moved the backend to another port (its old one was taken meanwhile).
      if (!v.url.empty() && v.url != t.first) {
        if (auto st = gw->set_replica_url(name, v.url); st)
          t.first = v.url;
        else
          rep.say("agifarm: " + st.err().message);
      }
      const bool ready = v.ready && (!od || od->serving(name));  // on demand: not while loading/restoring
      if (ready != t.second) {
        (void)gw->set_replica_ready(name, ready);
        if (fleet)
          rep.say(
              fmt::format("  {}: {}", name, v.ready ? "back in its pool" : "out of its pool: " + v.reason));
        t.second = ready;
      }
    }
  };
  std::vector<node_status> last_nodes;
  auto report_nodes = [&] {
    if (!fleet) return;
    auto now = fleet->snapshot();
    for (std::size_t i = 0; i < now.size(); ++i)
      if (i >= last_nodes.size() || last_nodes[i].state != now[i].state)
        rep.say(fmt::format("  node {}: {}{}", now[i].name, now[i].state,
                            now[i].error.empty() ? "" : " — " + now[i].error));
    last_nodes = std::move(now);
  };
  supervise::supervisor_events ev;
  ev.on_change = [&](const supervise::backend_status& b) {
    if (b.state == backend_state::ready || b.state == backend_state::backoff ||
        b.state == backend_state::failed)
      tried.insert(b.name);
    std::string line = fmt::format("  {}: {}", b.name, supervise::to_string(b.state));
    if (b.state == backend_state::starting) line += fmt::format(" (pid {}, port {})", b.pid, b.port);
    if (b.state == backend_state::ready)
      line +=
          fmt::format(" after {:.1f} s", std::chrono::duration<double>(b.ready_at - b.started_at).count());
    if (b.state == backend_state::backoff)
      line += fmt::format(" — {}; next start in {:.0f} s", b.reason,
                          std::chrono::duration<double>(b.next_start - clk.now()).count());
    if (b.state == backend_state::failed || b.state == backend_state::stopping) line += " — " + b.reason;
    if (!(b.state == backend_state::stopping && b.reason.empty())) rep.say(line);
    if (b.state == backend_state::failed && !b.log_tail.empty()) {
      rep.say(fmt::format("    last lines of {}:", b.log_path));
      auto n = b.log_tail.size();
      for (auto i = n > 6 ? n - 6 : 0; i < n; ++i) rep.say("    | " + b.log_tail[i]);
    }
    if (sup) {
      sync_gateway();
      write_state();
    }
  };
  ev.on_progress = [&](const std::string& name, const std::string& line) {
    rep.say(fmt::format("  {} | {}", name, line.size() > 160 ? line.substr(0, 160) + "..." : line));
  };
  auto sup_options = make_options(r.ff, r.llama_bin, r.paths);
  if (od) sup_options.on_demand = od->on_demand_backends();
  sup = std::make_unique<supervise::supervisor>(local, std::move(sup_options), clk, launcher, prober, files,
                                                ports, ev);
  if (auto st = sup->prepare(); !st) {
    err << st.err().message << '\n';
    return st.err().exit_code;
  }
  (void)supervise::write_file_atomic(r.paths.pid(), fmt::format("{}\n", ::getpid()));
  write_state();

  auto gateway_config = [&]() -> result<gateway::config> {
    std::map<std::string, std::string> urls;
    auto view =
        replica_view(all, local_records(*sup), fleet ? fleet->snapshot() : std::vector<node_status>{});
    for (const auto& b : all.backends) {
      if (b.kind != plan::backend_kind::llama_server) continue;
      auto v = view.find(b.name);
      // Not known yet (a remote backend whose node has not reported its port): a placeholder the
      // gateway never uses, since the replica stays out of rotation until its real URL arrives.
      urls[b.name] = v != view.end() && !v->second.url.empty()
                         ? v->second.url
                         : fmt::format("http://{}:{}", b.host, b.port ? b.port : 9);
    }
    return gateway_config_from_deployment(all, urls, r.gateway);
  };
  if (!o.node_mode) {
    auto gcfg = gateway_config();  // checked now; built again below with the ports the backends ended up on
    if (!gcfg) {
      err << gcfg.err().message << '\n';
      return gcfg.err().exit_code;
    }
  }

  int signal_seen = 0;
  int exit_code = 0;
  // Start-up is over when every backend has had its chance: it became ready, or it crashed or failed
  // at least once (a crash-looping backend must not keep the rest of the farm from serving), or it
  // waits on a dependency that did.
  auto startup_over = [&] {
    const auto& bs = sup->backends();
    std::map<std::string, std::size_t> at;
    for (std::size_t i = 0; i < bs.size(); ++i) at[bs[i].name] = i;
    for (std::size_t i = 0; i < bs.size(); ++i) {
      if (tried.count(bs[i].name)) continue;
      if (bs[i].state == backend_state::stopped && bs[i].pid == 0) continue;  // on demand: not started yet
      if (bs[i].state == backend_state::waiting) {
        const auto& deps = sup->deployment().backends[i].depends_on;
        if (std::any_of(deps.begin(), deps.end(), [&](auto& n) {
              auto st = bs[at[n]].state;
              return st == backend_state::backoff || st == backend_state::failed;
            }))
          continue;
      }
      return false;
    }
    return true;
  };
  auto start_local = [&] {
    if (local.backends.empty()) return;
    rep.say(fmt::format("agifarm: starting {} backends{} (state and logs in {})", sup->backends().size(),
                        fleet ? " on this machine" : "", r.paths.dir));
    while (!sup->all_settled() && !startup_over()) {
      auto next = sup->step();
      if (sup->all_settled() || startup_over()) break;
      int s = wait_signal(sigs, next);
      if (s == SIGINT || s == SIGTERM || s == SIGHUP) {
        signal_seen = s;
        break;
      }
    }
  };
  auto start_nodes = [&]() -> bool {
    if (!fleet || signal_seen) return true;
    auto say = [&](const std::string& l) { rep.say("  " + l); };
    rep.say(fmt::format("agifarm: checking {} remote nodes over ssh", fleet->size()));
    if (auto st = fleet->check(say); !st) {
      rep.say("agifarm: not starting: a node cannot run its part (nothing was started)");
      return false;
    }
    rep.say("agifarm: starting the remote nodes (dependencies first)");
    if (auto st = fleet->start(say); !st) {
      rep.say("agifarm: a node did not start; stopped what had started");
      return false;
    }
    for (std::size_t i = 0; i < fleet->size(); ++i) fleet->poll(i);
    write_state();
    report_nodes();
    return true;
  };
  bool nodes_ok = true;
  if (local_first) {
    start_local();
    nodes_ok = start_nodes();
  } else {
    nodes_ok = start_nodes();
    if (nodes_ok) start_local();
  }
  auto recs = records();
  bool any_ready = std::any_of(recs.begin(), recs.end(), [](auto& b) { return b.state == "ready"; });
  // A farm of on-demand models only has nothing ready yet, and that is fine.
  if (od && std::all_of(recs.begin(), recs.end(),
                        [](auto& b) { return b.state == "ready" || b.state == "stopped"; }))
    any_ready = true;
  if (!nodes_ok) {
    exit_code = 1;
  } else if (!signal_seen && !any_ready) {
    rep.say("agifarm: no backend became ready; stopping (see the reasons above, `agifarm logs NAME`)");
    exit_code = 1;
  }
  if (!signal_seen && exit_code == 0 && o.node_mode) {
    // A node daemon: no gateway (the controller's gateway routes here); run until told to stop.
    int ready = 0;
    for (const auto& b : recs) ready += b.state == "ready";
    phase = "running";
    write_state();
    started_up = true;
    rep.say(fmt::format("agifarm: node {} is up: {} of {} backends ready", o.node_name, ready, recs.size()));
    for (const auto& b : recs)
      rep.say(fmt::format("  {:<24} {:<8} {}:{}{}", b.name, b.state, b.host, b.port,
                          b.reason.empty() ? "" : "  " + b.reason));
    rep.finish_startup(0);
    while (!signal_seen) {
      auto next = sup->step();
      int s = wait_signal(sigs, next);
      if (s == SIGINT || s == SIGTERM || (s == SIGHUP && !o.detach)) signal_seen = s;
    }
    rep.say(fmt::format("agifarm: {} received, stopping node {}", strsignal(signal_seen), o.node_name));
  } else if (!signal_seen && exit_code == 0) {
    auto gcfg = gateway_config();
    if (!gcfg) {
      err << gcfg.err().message << '\n';
      return gcfg.err().exit_code;
    }
    if (od) od->configure(*gcfg);
    auto dash =
        std::make_shared<status_cache>(r.paths);  // the dashboard's status JSON, rebuilt once a second
    gcfg->status_json = [dash] { return dash->latest(); };
    gcfg->memory_rows = [dash] { return dash->memory(); };  // /metrics: measured vs predicted memory
    gw = std::make_unique<gateway::server>(*gcfg);
    std::set<std::string> not_started;  // on-demand replicas: out of rotation until loaded
    if (od)
      for (const auto& b : sup->backends())
        if (b.state == backend_state::stopped) {
          not_started.insert(b.name);
          (void)gw->set_replica_ready(b.name, false);
        }
    if (auto st = gw->start(); !st) {
      rep.say("agifarm: the gateway did not start: " + st.err().message);
      gw.reset();
      exit_code = 1;
    } else {
      for (const auto& p : gcfg->pools)
        for (const auto& rc : p.replicas) told[rc.name] = {rc.url, !not_started.count(rc.name)};
      sync_gateway();
      endpoint = fmt::format("http://{}:{}",
                             gcfg->listen_host.find(':') != std::string::npos ? "[" + gcfg->listen_host + "]"
                                                                              : gcfg->listen_host,
                             gw->port());
      phase = "running";
      write_state();
      started_up = true;
      print_summary(rep, all, records(), endpoint, source, *gcfg);
      rep.finish_startup(0);
      if (fleet)
        watch = std::make_unique<node_watch>(
            *fleet, [main_thread] { ::pthread_kill(main_thread, SIGUSR1); }, std::chrono::milliseconds(1000));
      std::string last_models;
      auto say = [&](const std::string& l) { rep.say(l); };
      while (!signal_seen) {
        auto next = sup->step();
        if (od) {
          next = std::min(next, od->step(*sup, gw.get(), clk.now(), say));
          sync_gateway();  // a model that became loaded (and restored) joins its pool now
          auto recs_now = od->records();
          std::string now_models;
          for (const auto& m : recs_now)
            now_models +=
                fmt::format("{}:{}:{}:{}:{}:{};", m.name, m.state, m.loads, m.evictions, m.unloads, m.reason);
          if (now_models != last_models) {
            gw->set_model_status(od->statuses());
            write_state();
            last_models = std::move(now_models);
          }
        }
        if (fleet) {
          sync_gateway();
          report_nodes();
          write_state();
          next = std::min(next, clk.now() + std::chrono::seconds(1));
        }
        int s = wait_signal(sigs, next);
        if (s == SIGINT || s == SIGTERM || (s == SIGHUP && !o.detach)) signal_seen = s;
      }
      rep.say(fmt::format("agifarm: {} received, stopping the farm", strsignal(signal_seen)));
    }
  }
  // Shutdown: the gateway first (no new requests), then the nodes (dependents first), then this
  // machine's backends.
  phase = "stopping";
  write_state();
  if (gw) {
    gw->stop(std::chrono::seconds(3));
    gw.reset();
  }
  if (watch) watch->stop();
  if (fleet && started_up) fleet->stop([&](const std::string& l) { rep.say("  " + l); });
  sup->stop_all();
  auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!sup->all_stopped() && std::chrono::steady_clock::now() < hard) {
    auto next = sup->step();
    if (sup->all_stopped()) break;
    wait_signal(sigs, next);
  }
  int left = 0;
  for (const auto& b : sup->backends())
    if (b.pid) {
      supervise::signal_process_group(b.pid, SIGKILL);
      ++left;
    }
  std::error_code ec;
  fs::remove(r.paths.state(), ec);
  fs::remove(r.paths.pid(), ec);
  fs::remove(r.paths.plan(), ec);
  rep.say(left ? fmt::format("agifarm: stopped ({} backends had to be killed)", left) : "agifarm: stopped");
  rep.finish_startup(exit_code ? exit_code : (signal_seen && !started_up ? 1 : 0));
  return exit_code;
}

}  // namespace

std::string node_state_dir(const std::string& node_name) {
  return default_state_dir() + "/node-" + node_name;
}

int run_up(const up_options& o, std::ostream& out, std::ostream& err) {
  auto r = resolve(o);
  if (!r) {
    err << "agifarm up: " << r.err().message << '\n';
    return r.err().exit_code;
  }
  auto lock = farm_lock::try_acquire(r->paths);
  if (!lock) {
    err << "agifarm up: " << lock.err().message << '\n';
    return 1;
  }
  if (!lock->held()) {
    out << "agifarm: a farm is already running in " << r->paths.dir << "; not starting another\n";
    print_running_farm(r->paths, out);
    return 1;
  }
  if (!o.detach) {
    reporter rep(out, -1);
    return serve(o, *r, *lock, rep, err);
  }

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    err << "agifarm up: pipe: " << std::strerror(errno) << '\n';
    return 1;
  }
  out.flush();
  err.flush();
  pid_t pid = ::fork();
  if (pid < 0) {
    err << "agifarm up: fork: " << std::strerror(errno) << '\n';
    return 1;
  }
  if (pid == 0) {
    // The daemon: own session, no terminal, output to the daemon log; the lock's descriptor is shared.
    ::close(fds[0]);
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDONLY);
    int log_fd = ::open(r->paths.daemon_log().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    if (null_fd > 2) ::close(null_fd);
    if (log_fd > 2) ::close(log_fd);
    // Keep nothing of the caller's open (a CI pipe held by the daemon would never see EOF).
    std::vector<int> inherited;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
      int fd = std::atoi(e.path().filename().c_str());
      if (fd > 2 && fd != fds[1] && fd != lock->fd()) inherited.push_back(fd);
    }
    for (int fd : inherited) ::close(fd);
    reporter rep(out, fds[1]);
    std::ostringstream errors;  // start-up errors also reach the waiting parent
    int code = serve(o, *r, *lock, rep, errors);
    if (!errors.str().empty()) {
      std::string e = errors.str();
      while (!e.empty() && e.back() == '\n') e.pop_back();
      rep.say(e);
    }
    rep.finish_startup(code ? code : 1);  // no-op if start-up already finished
    out.flush();
    err.flush();
    ::_exit(code);
  }
  ::close(fds[1]);
  lock->release();  // the daemon holds the lock through the shared descriptor
  std::string buf, line;
  int code = -1;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    std::size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind(k_exit_marker, 0) == 0) {
        code = std::atoi(line.c_str() + std::strlen(k_exit_marker));
      } else {
        out << line << '\n';
        out.flush();
      }
    }
    if (code >= 0) break;
  }
  ::close(fds[0]);
  if (code < 0) {
    err << "agifarm up: the farm daemon exited during start-up; see " << r->paths.daemon_log() << '\n';
    return 1;
  }
  if (code == 0)
    out << fmt::format("agifarm: running in the background (pid {}); log: {}\n", pid, r->paths.daemon_log());
  return code;
}

}  // namespace agifarm::farm
