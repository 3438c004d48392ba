// status / down / logs: read the state directory of a farm run by another process.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <thread>

#include "common/format.hpp"
#include "farm/farm_file.hpp"
#include "farm/nodes.hpp"
#include "farm/runner.hpp"
#include "farm/state.hpp"
#include "gateway/gateway.hpp"
#include "plan/plan_document.hpp"
#include "remote/remote.hpp"
#include "supervise/buffers_log.hpp"
#include "supervise/files.hpp"
#include "supervise/prober.hpp"
#include "supervise/process.hpp"

namespace agifarm::farm {
namespace {
namespace fs = std::filesystem;

std::string human_duration(std::int64_t s) {
  if (s < 0) s = 0;
  if (s < 120) return fmt::format("{}s", s);
  if (s < 7200) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
}

std::int64_t now_wall() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A pid from the state file is ours only if it still runs the program we started (pids are reused).
bool runs_program(int pid, const std::string& program) {
  if (pid <= 0 || !supervise::process_alive(pid)) return false;
  if (program.empty()) return true;
  return supervise::process_cmdline(pid).rfind(program, 0) == 0;
}

result<farm_paths> paths_for(const control_options& o) {
  farm_paths p;
  if (!o.state_dir.empty()) {
    p.dir = o.state_dir;
  } else if (!o.node_name.empty()) {
    p.dir = node_state_dir(o.node_name);
  } else if (!o.farm_file.empty()) {
    auto f = load_farm_file(o.farm_file);
    if (!f) return f.err();
    p.dir = f->state_dir.empty() ? default_state_dir() : f->state_dir;
  } else {
    p.dir = default_state_dir();
  }
  return p;
}

// Requests being processed by a llama-server, from GET /slots; -1 when it cannot tell.
int in_flight(const backend_record& b) {
  if (b.kind != "llama-server" || b.port <= 0 || b.state != "ready") return -1;
  auto a = supervise::http_get(b.host, b.port, "/slots", std::chrono::milliseconds(1500));
  if (a.status != 200) return -1;
  boost::system::error_code ec;
  auto v = boost::json::parse(a.body, ec);
  if (ec || !v.is_array()) return -1;
  int n = 0;
  for (auto& s : v.as_array())
    if (auto* o = s.if_object())
      if (auto* p = o->if_contains("is_processing"); p && p->is_bool() && p->as_bool()) ++n;
  return n;
}

remote::ssh_shell shell_for(const farm_state& s) {
  remote::ssh_settings ss;
  ss.options = s.ssh_options;
  ss.control_dir = remote::default_control_dir();
  return remote::ssh_shell(ss);
}

result<remote_node> node_from_record(const node_record& n) {
  auto t = remote::parse_ssh_target(n.ssh);
  if (!t) return t.err();
  remote_node rn;
  rn.name = n.name;
  rn.target = *t;
  rn.address = n.address;
  rn.agifarm = n.agifarm;
  rn.llama_bin = n.llama_bin;
  rn.state_dir = n.state_dir;
  return rn;
}

}  // namespace

// `agifarm node down` on every node a (dead) controller recorded: nothing of the farm is left anywhere.
void stop_recorded_nodes(const farm_state& s, std::ostream& out) {
  if (s.nodes.empty()) return;
  auto sh = shell_for(s);
  for (auto it = s.nodes.rbegin(); it != s.nodes.rend(); ++it) {
    auto rn = node_from_record(*it);
    if (!rn) {
      out << fmt::format("node {}: {}\n", it->name, rn.err().message);
      continue;
    }
    auto r = sh.run(rn->target, rn->argv("down"), {}, std::chrono::seconds(90));
    if (!r)
      out << fmt::format("node {}: could not stop it: {}\n", it->name, r.err().message);
    else if (r->exit_code != 0)
      out << fmt::format("node {}: `agifarm node down` failed (exit {})\n", it->name, r->exit_code);
    else
      out << fmt::format("node {}: stopped\n", it->name);
  }
}

int kill_leftovers(const farm_state& s, std::ostream& out) {
  int killed = 0;
  std::vector<int> pids;
  for (const auto& b : s.backends) {
    if (b.node != "local" || !runs_program(b.pid, b.program)) continue;
    out << fmt::format("stopping leftover backend {} (pid {})\n", b.name, b.pid);
    supervise::signal_process_group(b.pid, SIGTERM);
    pids.push_back(b.pid);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int pid : pids) {
    while (supervise::process_alive(pid) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a condition with a deadline
    if (supervise::process_alive(pid)) {
      supervise::signal_process_group(pid, SIGKILL);
      out << fmt::format("killed pid {} (no exit within 10 s of SIGTERM)\n", pid);
    }
    ++killed;
  }
  return killed;
}

void print_running_farm(const farm_paths& paths, std::ostream& out) {
  auto text = supervise::read_file(paths.state());
  if (!text) {
    out << "  (its state file is not written yet)\n";
    return;
  }
  auto s = farm_state_from_json(*text);
  if (!s) {
    out << "  " << s.err().message << '\n';
    return;
  }
  out << fmt::format("  pid {}, {}, up {}, endpoint {}\n", s->supervisor_pid, s->phase,
                     human_duration(now_wall() - s->started_wall),
                     s->endpoint.empty() ? "(not yet)" : s->endpoint + "/v1");
  out << "  `agifarm status` shows it, `agifarm down` stops it\n";
}

namespace {

// The gateway's counters per pool (requests, tokens, queue depth), read from its own /metrics.
struct pool_counters {
  double requests = 0, prompt_tokens = 0, completion_tokens = 0, queued = 0, errors = 0;
};

// "name{pool=\"x\",...} value" -> pool x's value; false for anything else.
bool metric_line(std::string_view line, std::string_view name, std::string& pool, std::string& code,
                 double& value) {
  if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != '{') return false;
  auto close = line.find("} ", name.size());
  if (close == std::string_view::npos) return false;
  std::string_view labels = line.substr(name.size() + 1, close - name.size() - 1);
  auto label = [&](std::string_view key) -> std::string {
    std::string k = std::string(key) + "=\"";
    auto at = labels.find(k);
    if (at == std::string_view::npos) return {};
    std::string out;
    for (std::size_t i = at + k.size(); i < labels.size() && labels[i] != '"'; ++i) {
      if (labels[i] == '\\' && i + 1 < labels.size()) ++i;
      out += labels[i];
    }
    return out;
  };
  pool = label("pool");
  code = label("code");
  try {
    value = std::stod(std::string(line.substr(close + 2)));
  } catch (...) {
    return false;
  }
  return !pool.empty();
}

std::map<std::string, pool_counters> gateway_counters(const std::string& endpoint) {
  std::map<std::string, pool_counters> out;
  // "http://host:port" (an IPv6 host in brackets); a wildcard listen address is reached on loopback
  if (!endpoint.starts_with("http://")) return out;
  std::string hp = endpoint.substr(7);
  auto colon = hp.rfind(':');
  if (colon == std::string::npos) return out;
  std::string host = hp.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  int port = std::atoi(hp.c_str() + colon + 1);
  if (port <= 0) return out;
  auto a = supervise::http_get(host, port, "/metrics", std::chrono::milliseconds(1500));
  if (a.status != 200) return out;
  std::string_view body = a.body;
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto nl = body.find('\n', pos);
    if (nl == std::string_view::npos) nl = body.size();
    std::string_view line = body.substr(pos, nl - pos);
    pos = nl + 1;
    std::string pool, code;
    double v = 0;
    if (metric_line(line, "agifarm_gateway_requests_total", pool, code, v)) {
      out[pool].requests += v;
      if (!code.empty() && code[0] != '2') out[pool].errors += v;
    } else if (metric_line(line, "agifarm_gateway_prompt_tokens_total", pool, code, v)) {
      out[pool].prompt_tokens += v;
    } else if (metric_line(line, "agifarm_gateway_completion_tokens_total", pool, code, v)) {
      out[pool].completion_tokens += v;
    } else if (metric_line(line, "agifarm_gateway_queue_depth", pool, code, v)) {
      out[pool].queued += v;
    }
  }
  return out;
}

boost::json::object bytes_json(const device_memory_record& d) {
  return {{"model_bytes", d.model_bytes},
          {"kv_bytes", d.kv_bytes},
          {"compute_bytes", d.compute_bytes},
          {"total_bytes", d.total()}};
}

// The plan's strategy table, when the farm was started from a plan file (`agifarm up --plan plan.json`).
boost::json::value plan_table(const farm_paths& paths, const std::string& source) {
  // A farm file planned at `up` keeps its document in the state directory; a plan file is itself one.
  std::string file = paths.plan();
  auto text = supervise::read_file(file);
  if (!text) {
    if (source.size() < 5 || source.substr(source.size() - 5) != ".json") return nullptr;
    file = source;
    text = supervise::read_file(source);
  }
  if (!text) return nullptr;
  auto doc = plan::parse_plan_document(*text);
  if (!doc) return nullptr;
  boost::json::array cands;
  for (std::size_t i = 0; i < doc->candidates.size(); ++i) {
    const auto& c = doc->candidates[i];
    cands.push_back({{"model", c.model},
                     {"role", c.role},
                     {"strategy", c.strategy},
                     {"summary", c.summary},
                     {"feasible", c.feasible},
                     {"why_not", c.why_not},
                     {"decode_tps", c.decode_tps},
                     {"aggregate_decode_tps", c.aggregate_decode_tps},
                     {"max_ctx", c.max_ctx},
                     {"agents", c.agents},
                     {"score", c.score},
                     {"chosen", static_cast<int>(i) == doc->recommendation.candidate}});
  }
  const auto& r = doc->recommendation;
  return boost::json::object{{"file", file},
                             {"strategy", r.strategy},
                             {"reasons", boost::json::array(r.reasons.begin(), r.reasons.end())},
                             {"runner_up", r.runner_up},
                             {"runner_up_gain", r.runner_up_gain},
                             {"candidates", std::move(cands)}};
}

}  // namespace

namespace {
// Predicted devices paired with measured ones by their name before '[' (RPC0[...]); then the measured
// devices the plan did not predict.
std::vector<std::pair<const device_memory_record*, const device_memory_record*>> device_pairs(
    const backend_record& b) {
  std::vector<std::pair<const device_memory_record*, const device_memory_record*>> out;
  std::vector<bool> used(b.measured_devices.size(), false);
  for (const auto& p : b.predicted_devices) {
    const device_memory_record* m = nullptr;
    for (std::size_t i = 0; i < b.measured_devices.size(); ++i)
      if (!used[i] &&
          supervise::device_key(b.measured_devices[i].device) == supervise::device_key(p.device)) {
        used[i] = true;
        m = &b.measured_devices[i];
        break;
      }
    out.emplace_back(&p, m);
  }
  for (std::size_t i = 0; i < b.measured_devices.size(); ++i)
    if (!used[i]) out.emplace_back(nullptr, &b.measured_devices[i]);
  return out;
}
}  // namespace

std::vector<gateway::memory_row> memory_metric_rows(const farm_state& s) {
  std::vector<gateway::memory_row> rows;
  auto buffers = [](const device_memory_record* d) -> std::optional<gateway::memory_buffers> {
    if (!d) return std::nullopt;
    return gateway::memory_buffers{d->model_bytes, d->kv_bytes, d->compute_bytes};
  };
  for (const auto& b : s.backends)
    for (const auto& [pred, meas] : device_pairs(b))
      rows.push_back(
          {b.name, b.model, b.node, meas ? meas->device : pred->device, buffers(pred), buffers(meas)});
  return rows;
}

boost::json::array memory_rows(const backend_record& b) {
  boost::json::array rows;
  auto add = [&](const device_memory_record* pred, const device_memory_record* meas) {
    boost::json::object row{{"device", meas ? meas->device : pred->device}};
    row["predicted"] = pred ? boost::json::value(bytes_json(*pred)) : boost::json::value(nullptr);
    row["measured"] = meas ? boost::json::value(bytes_json(*meas)) : boost::json::value(nullptr);
    if (pred && meas) {
      double diff = static_cast<double>(meas->total()) - static_cast<double>(pred->total());
      row["diff_bytes"] = static_cast<std::int64_t>(diff);
      row["diff_pct"] =
          pred->total() ? std::round(1000.0 * diff / static_cast<double>(pred->total())) / 10.0 : 0.0;
    } else {
      row["diff_bytes"] = nullptr;
      row["diff_pct"] = nullptr;
    }
    rows.push_back(std::move(row));
  };
  for (const auto& [pred, meas] : device_pairs(b)) add(pred, meas);
  return rows;
}

std::vector<device_memory_record> measured_devices(const std::string& log_path, std::int64_t started_wall) {
  static std::mutex mu;
  static std::map<std::string, std::pair<std::int64_t, std::vector<device_memory_record>>> done;
  if (log_path.empty() || started_wall == 0) return {};
  {
    std::lock_guard lk(mu);
    if (auto it = done.find(log_path); it != done.end() && it->second.first == started_wall)
      return it->second.second;
  }
  // The buffer lines follow the last start marker; a log larger than 32 MiB is read from its end.
  std::ifstream in(log_path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  auto size = static_cast<std::int64_t>(in.tellg());
  const std::int64_t cap = 32ll << 20;
  in.seekg(size > cap ? size - cap : 0);
  std::string text(static_cast<std::size_t>(std::min(size, cap)), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  auto rep = supervise::parse_buffers_log(text);
  if (!rep.complete) return {};
  std::vector<device_memory_record> out;
  for (const auto& d : rep.devices) out.push_back({d.device, d.model_bytes, d.kv_bytes, d.compute_bytes});
  std::lock_guard lk(mu);
  done[log_path] = {started_wall, out};
  return out;
}

std::vector<device_memory_record> predicted_devices(const plan::backend_spec& b) {
  std::vector<device_memory_record> out;
  if (!b.predicted) return out;
  for (const auto& d : b.predicted->devices)
    out.push_back({d.name, d.model_bytes, d.context_bytes, d.compute_bytes});
  const auto& h = b.predicted->host;
  if (h.model_bytes || h.context_bytes || h.compute_bytes)
    out.push_back({"host", h.model_bytes, h.context_bytes, h.compute_bytes});
  return out;
}

void log_buffers_at_load(plan::deployment& d) {
  for (auto& b : d.backends) {
    if (b.kind != plan::backend_kind::llama_server) continue;
    bool set = std::any_of(b.args.begin(), b.args.end(), [](const std::string& a) {
      return a == "-lv" || a == "--verbosity" || a == "--log-verbosity" || a == "-v" || a == "--verbose" ||
             a == "--log-disable" || a.starts_with("--verbosity=") || a.starts_with("--log-verbosity=");
    });
    if (!set) {
      b.args.push_back("-lv");
      b.args.push_back("4");
    }
  }
}

boost::json::object status_json(const farm_paths& paths, const farm_state& s, const status_options& o) {
  const auto now = now_wall();
  auto j = to_json(s);
  j["running"] = true;
  j["state_dir"] = paths.dir;
  j["uptime_s"] = now - s.started_wall;
  j["now_wall"] = now;
  auto& arr = j["backends"].as_array();
  supervise::real_files files;
  for (std::size_t i = 0; i < s.backends.size(); ++i) {
    const auto& b = s.backends[i];
    auto& o2 = arr[i].as_object();
    o2["memory"] = memory_rows(b);
    if (b.node != "local") {  // as its node last reported it
      o2["alive"] = b.pid > 0 && b.state != "unreachable";
      o2["uptime_s"] = b.pid ? now - b.started_wall : 0;
      o2["in_flight"] = nullptr;
      o2["log_tail"] = boost::json::array();
      continue;
    }
    bool alive = runs_program(b.pid, b.program);
    o2["alive"] = alive;
    o2["uptime_s"] = b.pid && alive ? now - b.started_wall : 0;
    o2["rss_bytes"] = alive ? supervise::process_rss_bytes(b.pid) : 0;
    int f = o.brief ? -1 : in_flight(b);
    if (f >= 0)
      o2["in_flight"] = f;
    else
      o2["in_flight"] = nullptr;
    boost::json::array tail;
    if (o.log_lines > 0 && !b.log_path.empty())
      for (auto& l : files.tail(b.log_path, o.log_lines))
        tail.push_back(boost::json::string(l.size() > 400 ? l.substr(0, 400) : l));
    o2["log_tail"] = std::move(tail);
  }
  auto counters = o.brief ? std::map<std::string, pool_counters>{} : gateway_counters(s.endpoint);
  auto& pools = j["pools"].as_array();
  for (std::size_t i = 0; i < s.pools.size(); ++i) {
    auto& po = pools[i].as_object();
    auto it = counters.find(s.pools[i].name);
    if (it == counters.end()) {
      po["requests_total"] = nullptr;
      po["errors_total"] = nullptr;
      po["prompt_tokens_total"] = nullptr;
      po["completion_tokens_total"] = nullptr;
      po["queue_depth"] = nullptr;
      continue;
    }
    po["requests_total"] = it->second.requests;
    po["errors_total"] = it->second.errors;
    po["prompt_tokens_total"] = it->second.prompt_tokens;
    po["completion_tokens_total"] = it->second.completion_tokens;
    po["queue_depth"] = it->second.queued;
  }
  j["plan"] = plan_table(paths, s.source);
  return j;
}

status_cache::status_cache(farm_paths paths) : paths_(std::move(paths)), latest_(R"({"running":false})") {
  thread_ = std::thread([this] {
    std::unique_lock lk(mu_);
    while (!stop_) {
      lk.unlock();
      refresh();
      lk.lock();
      cv_.wait_for(lk, std::chrono::seconds(1), [this] { return stop_; });
    }
  });
}

status_cache::~status_cache() { stop(); }

void status_cache::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string status_cache::latest() const {
  std::lock_guard lk(mu_);
  return latest_;
}

std::vector<gateway::memory_row> status_cache::memory() const {
  std::lock_guard lk(mu_);
  return memory_;
}

void status_cache::refresh() {
  auto text = supervise::read_file(paths_.state());
  if (!text) return;
  auto s = farm_state_from_json(*text);
  if (!s) return;
  std::string out = boost::json::serialize(status_json(paths_, *s, {}));
  auto mem = memory_metric_rows(*s);
  std::lock_guard lk(mu_);
  latest_ = std::move(out);
  memory_ = std::move(mem);
}

int run_status(const control_options& o, bool json, std::ostream& out, std::ostream& err) {
  auto paths = paths_for(o);
  if (!paths) {
    err << "agifarm status: " << paths.err().message << '\n';
    return paths.err().exit_code;
  }
  const bool running = farm_lock::is_held(*paths);
  auto text = supervise::read_file(paths->state());
  if (!running) {
    if (json)
      out << R"({"running":false})" << '\n';
    else if (text)
      out << fmt::format(
          "no farm is running in {} (an earlier one did not stop cleanly; `agifarm up` or `agifarm down` "
          "cleans up)\n",
          paths->dir);
    else
      out << fmt::format("no farm is running in {}\n", paths->dir);
    return 1;
  }
  if (!text) {
    err << "agifarm status: a farm holds " << paths->lock() << " but has not written its state yet\n";
    return 1;
  }
  auto s = farm_state_from_json(*text);
  if (!s) {
    err << "agifarm status: " << paths->state() << ": " << s.err().message << '\n';
    return 2;
  }
  const auto now = now_wall();
  if (json) {
    status_options so;
    so.brief = o.brief;
    auto j = status_json(*paths, *s, so);
    out << boost::json::serialize(j) << '\n';
    return 0;
  }
  out << fmt::format("farm pid {} ({}), up {}, strategy {}, from {}\n", s->supervisor_pid, s->phase,
                     human_duration(now - s->started_wall), s->strategy, s->source);
  out << fmt::format("endpoint {}\n",
                     s->endpoint.empty() ? "(gateway not started yet)" : s->endpoint + "/v1");
  for (const auto& p : s->pools) {
    std::string aliases;
    for (const auto& a : p.aliases) aliases += (aliases.empty() ? "" : ", ") + a;
    out << fmt::format("model {}{}\n", p.name, aliases.empty() ? "" : " (roles " + aliases + ")");
  }
  if (!s->models.empty()) {
    out << fmt::format("{:<24} {:<10} {:<10} {:>6} {:>10} {:>8} {:>10} {:>10}  {}\n", "MODEL", "MODE",
                       "STATE", "LOADS", "EVICTIONS", "UNLOADS", "LAST LOAD", "LOAD TIME", "REASON");
    for (const auto& m : s->models)
      out << fmt::format(
          "{:<24} {:<10} {:<10} {:>6} {:>10} {:>8} {:>10} {:>10}  {}\n", m.name,
          m.on_demand ? (m.pinned ? "pinned" : "on-demand") : "always-on", m.state, m.loads, m.evictions,
          m.unloads, m.loads && m.on_demand ? fmt::format("{:.1f} s", m.last_load_s) : "-",
          m.loads && m.on_demand ? fmt::format("{:.1f} s", m.total_load_s) : "-",
          m.restored_tokens ? fmt::format("{}prompt cache restored: {} tokens",
                                          m.reason.empty() ? "" : m.reason + "; ", m.restored_tokens)
                            : m.reason);
  }
  if (!s->nodes.empty()) {
    out << fmt::format("{:<12} {:<24} {:<16} {:<12} {:<14}  {}\n", "NODE", "SSH", "ADDRESS", "STATE", "SINCE",
                       "VERSIONS / ERROR");
    out << fmt::format("{:<12} {:<24} {:<16} {:<12} {:<14}  {}\n", "local", "-", "-", "up", "-",
                       "this machine (controller)");
    for (const auto& n : s->nodes)
      out << fmt::format("{:<12} {:<24} {:<16} {:<12} {:<14}  {}\n", n.name, n.ssh, n.address, n.state,
                         human_duration(now - n.since_wall) + " ago",
                         !n.error.empty()
                             ? n.error
                             : fmt::format("agifarm {}, llama.cpp {}{}", n.agifarm_version, n.llama_version,
                                           n.restarts ? fmt::format(", restarted {}x", n.restarts) : ""));
  }
  const bool nodes = !s->nodes.empty();
  out << fmt::format("{:<24} {}{:<11} {:>7} {:>6} {:>8} {:>8} {:>10} {:>24} {:>9}  {}\n", "BACKEND",
                     nodes ? fmt::format("{:<12} ", "NODE") : "", "STATE", "PID", "PORT", "RESTARTS",
                     "UPTIME", "RSS", "BUFFERS (MEASURED/PLAN)", "IN-FLIGHT", "REASON");
  for (const auto& b : s->backends) {
    const bool remote = b.node != "local";
    bool alive = remote ? b.pid > 0 && b.state != "unreachable" : runs_program(b.pid, b.program);
    std::string rss = !alive   ? "-"
                      : remote ? (b.rss_bytes ? human_bytes(b.rss_bytes) : "?")
                               : human_bytes(supervise::process_rss_bytes(b.pid));
    std::uint64_t measured = 0;
    for (const auto& d : b.measured_devices) measured += d.total();
    std::string mem = (measured ? human_bytes(measured) : std::string("-")) + " / " +
                      (b.predicted_bytes ? human_bytes(b.predicted_bytes) : std::string("-"));
    int f = remote || o.brief ? -1 : in_flight(b);
    out << fmt::format("{:<24} {}{:<11} {:>7} {:>6} {:>8} {:>8} {:>10} {:>24} {:>9}  {}\n", b.name,
                       nodes ? fmt::format("{:<12} ", b.node) : "", b.state,
                       b.pid ? std::to_string(b.pid) : "-", b.port, b.restarts,
                       b.pid && alive ? human_duration(now - b.started_wall) : "-", rss, mem,
                       f >= 0 ? fmt::format("{}/{}", f, b.slots) : "-", b.reason);
  }
  // Measured (the buffers llama-server printed at load) against predicted (the plan), per device.
  bool any_mem = false;
  for (const auto& b : s->backends)
    any_mem = any_mem || !b.measured_devices.empty() || !b.predicted_devices.empty();
  if (any_mem) {
    out << fmt::format("{:<24} {:<26} {:>11} {:>11} {:>11} {:>8}\n", "MEMORY", "DEVICE", "PREDICTED",
                       "MEASURED", "DIFF", "DIFF %");
    constexpr double mib = 1024.0 * 1024.0;
    for (const auto& b : s->backends)
      for (const auto& row : memory_rows(b)) {
        const auto& r = row.as_object();
        auto total = [&](const char* k) -> std::string {
          const auto& v = r.at(k);
          if (v.is_null()) return "-";
          return fmt::format("{:.1f} MiB",
                             static_cast<double>(v.at("total_bytes").to_number<std::uint64_t>()) / mib);
        };
        const auto& db = r.at("diff_bytes");
        const auto& dp = r.at("diff_pct");
        out << fmt::format(
            "{:<24} {:<26} {:>11} {:>11} {:>11} {:>8}\n", b.name, std::string(r.at("device").as_string()),
            total("predicted"), total("measured"),
            db.is_null() ? "-" : fmt::format("{:+.1f} MiB", static_cast<double>(db.as_int64()) / mib),
            dp.is_null() ? "-" : fmt::format("{:+.1f} %", dp.as_double()));
      }
  }
  return 0;
}

int run_down(const control_options& o, int timeout_s, std::ostream& out, std::ostream& err) {
  auto paths = paths_for(o);
  if (!paths) {
    err << "agifarm down: " << paths.err().message << '\n';
    return paths.err().exit_code;
  }
  auto lock = farm_lock::try_acquire(*paths);
  if (!lock) {
    err << "agifarm down: " << lock.err().message << '\n';
    return 1;
  }
  auto text = supervise::read_file(paths->state());
  std::optional<farm_state> s;
  if (text)
    if (auto p = farm_state_from_json(*text); p) s = std::move(*p);
  if (lock->held()) {  // nobody runs the farm
    if (!s) {
      out << fmt::format("no farm is running in {}\n", paths->dir);
      return 0;
    }
    out << fmt::format("no farm is running in {}; cleaning up after pid {}\n", paths->dir, s->supervisor_pid);
    kill_leftovers(*s, out);
    stop_recorded_nodes(*s, out);
    std::error_code ec;
    fs::remove(paths->state(), ec);
    fs::remove(paths->pid(), ec);
    return 0;
  }
  int pid = s ? s->supervisor_pid : 0;
  if (pid <= 0) {
    if (auto p = supervise::read_file(paths->pid()); p) pid = std::atoi(p->c_str());
  }
  if (pid <= 0) {
    err << "agifarm down: a farm holds " << paths->lock() << " but its pid is unknown\n";
    return 1;
  }
  out << fmt::format("stopping the farm (pid {})\n", pid);
  ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  bool stopped = false;
  while (std::chrono::steady_clock::now() < deadline) {
    auto l = farm_lock::try_acquire(*paths);
    if (l && l->held()) {
      stopped = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a condition with a deadline
  }
  if (!stopped) {
    out << fmt::format("the farm did not stop within {} s; killing pid {}\n", timeout_s, pid);
    ::kill(pid, SIGKILL);
    if (s) stop_recorded_nodes(*s, out);  // what the killed controller did not stop
  }
  int left = s ? kill_leftovers(*s, out) : 0;
  if (s) {
    for (const auto& b : s->backends)
      if (b.node == "local" && runs_program(b.pid, b.program)) {
        err << fmt::format("agifarm down: backend {} (pid {}) is still running\n", b.name, b.pid);
        return 1;
      }
  }
  out << fmt::format("farm stopped{}; no backend process left\n",
                     left ? fmt::format(" ({} leftover processes killed)", left) : "");
  return stopped ? 0 : 1;
}

int run_logs(const control_options& o, const std::string& name, int lines, std::ostream& out,
             std::ostream& err) {
  auto paths = paths_for(o);
  if (!paths) {
    err << "agifarm logs: " << paths.err().message << '\n';
    return paths.err().exit_code;
  }
  if (auto slash = name.find('/'); slash != std::string::npos) {
    // NODE/NAME: a remote node's backend, read over ssh from the node's own state dir.
    std::string node = name.substr(0, slash), backend = name.substr(slash + 1);
    auto text = supervise::read_file(paths->state());
    auto s = text ? farm_state_from_json(*text) : result<farm_state>(make_error("no farm state"));
    if (!s) {
      err << fmt::format("agifarm logs: no farm with nodes is running in {}\n", paths->dir);
      return 1;
    }
    auto n = std::find_if(s->nodes.begin(), s->nodes.end(), [&](auto& x) { return x.name == node; });
    if (n == s->nodes.end()) {
      std::string names;
      for (const auto& x : s->nodes) names += (names.empty() ? "" : ", ") + x.name;
      err << fmt::format("agifarm logs: no node '{}' in this farm (nodes: {})\n", node,
                         names.empty() ? "none" : names);
      return 2;
    }
    auto rn = node_from_record(*n);
    if (!rn) {
      err << "agifarm logs: " << rn.err().message << '\n';
      return 2;
    }
    auto argv = rn->argv("logs");
    argv.insert(argv.end(), {backend, "-n", std::to_string(lines)});
    auto sh = shell_for(*s);
    auto r = sh.run(rn->target, argv, {}, std::chrono::seconds(30));
    if (!r) {
      err << "agifarm logs: node " << node << ": " << r.err().message << '\n';
      return 1;
    }
    out << r->out;
    err << r->err;
    return r->exit_code;
  }
  std::string path = (name == "agifarm" || name == "daemon") ? paths->daemon_log() : paths->log(name);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    std::string names;
    for (auto& e : fs::directory_iterator(paths->logs(), ec)) {
      auto f = e.path().filename().string();
      if (f.size() > 4 && f.substr(f.size() - 4) == ".log")
        names += (names.empty() ? "" : ", ") + f.substr(0, f.size() - 4);
    }
    err << fmt::format("agifarm logs: no log for '{}' in {} (backends: {}; 'agifarm' for the daemon)\n", name,
                       paths->logs(), names.empty() ? "none" : names);
    return 2;
  }
  supervise::real_files files;
  for (const auto& l : files.tail(path, lines)) out << l << '\n';
  return 0;
}

}  // namespace agifarm::farm
