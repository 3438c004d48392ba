// status / down / logs: read the state directory of a farm run by another process.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <ostream>
#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "farm/farm_file.hpp"
#include "farm/nodes.hpp"
#include "remote/remote.hpp"
#include "common/format.hpp"
#include "farm/runner.hpp"
#include "farm/state.hpp"
#include "supervise/files.hpp"
#include "supervise/process.hpp"
#include "supervise/prober.hpp"

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
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
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
    if (!rn) { out << fmt::format("node {}: {}\n", it->name, rn.err().message); continue; }
    auto r = sh.run(rn->target, rn->argv("down"), {}, std::chrono::seconds(90));
    if (!r) out << fmt::format("node {}: could not stop it: {}\n", it->name, r.err().message);
    else if (r->exit_code != 0) out << fmt::format("node {}: `agifarm node down` failed (exit {})\n", it->name, r->exit_code);
    else out << fmt::format("node {}: stopped\n", it->name);
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
  if (!text) { out << "  (its state file is not written yet)\n"; return; }
  auto s = farm_state_from_json(*text);
  if (!s) { out << "  " << s.err().message << '\n'; return; }
  out << fmt::format("  pid {}, {}, up {}, endpoint {}\n", s->supervisor_pid, s->phase,
                     human_duration(now_wall() - s->started_wall), s->endpoint.empty() ? "(not yet)" : s->endpoint + "/v1");
  out << "  `agifarm status` shows it, `agifarm down` stops it\n";
}

int run_status(const control_options& o, bool json, std::ostream& out, std::ostream& err) {
  auto paths = paths_for(o);
  if (!paths) { err << "agifarm status: " << paths.err().message << '\n'; return paths.err().exit_code; }
  const bool running = farm_lock::is_held(*paths);
  auto text = supervise::read_file(paths->state());
  if (!running) {
    if (json) out << R"({"running":false})" << '\n';
    else if (text) out << fmt::format("no farm is running in {} (an earlier one did not stop cleanly; `agifarm up` or `agifarm down` cleans up)\n", paths->dir);
    else out << fmt::format("no farm is running in {}\n", paths->dir);
    return 1;
  }
  if (!text) { err << "agifarm status: a farm holds " << paths->lock() << " but has not written its state yet\n"; return 1; }
  auto s = farm_state_from_json(*text);
  if (!s) { err << "agifarm status: " << paths->state() << ": " << s.err().message << '\n'; return 2; }
  const auto now = now_wall();
  if (json) {
    auto j = to_json(*s);
    j["running"] = true;
    j["state_dir"] = paths->dir;
    j["uptime_s"] = now - s->started_wall;
    auto& arr = j["backends"].as_array();
    for (std::size_t i = 0; i < s->backends.size(); ++i) {
      const auto& b = s->backends[i];
      auto& o2 = arr[i].as_object();
      if (b.node != "local") {  // as its node last reported it
        o2["alive"] = b.pid > 0 && b.state != "unreachable";
        o2["uptime_s"] = b.pid ? now - b.started_wall : 0;
        o2["in_flight"] = nullptr;
        continue;
      }
      bool alive = runs_program(b.pid, b.program);
      o2["alive"] = alive;
      o2["uptime_s"] = b.pid && alive ? now - b.started_wall : 0;
      o2["rss_bytes"] = alive ? supervise::process_rss_bytes(b.pid) : 0;
      int f = o.brief ? -1 : in_flight(b);
      if (f >= 0) o2["in_flight"] = f;
      else o2["in_flight"] = nullptr;
    }
    out << boost::json::serialize(j) << '\n';
    return 0;
  }
  out << fmt::format("farm pid {} ({}), up {}, strategy {}, from {}\n", s->supervisor_pid, s->phase,
                     human_duration(now - s->started_wall), s->strategy, s->source);
  out << fmt::format("endpoint {}\n", s->endpoint.empty() ? "(gateway not started yet)" : s->endpoint + "/v1");
  for (const auto& p : s->pools) {
    std::string aliases;
    for (const auto& a : p.aliases) aliases += (aliases.empty() ? "" : ", ") + a;
    out << fmt::format("model {}{}\n", p.name, aliases.empty() ? "" : " (roles " + aliases + ")");
  }
  if (!s->models.empty()) {
    out << fmt::format("{:<24} {:<10} {:<10} {:>6} {:>10} {:>8} {:>10} {:>10}  {}\n", "MODEL", "MODE", "STATE", "LOADS",
                       "EVICTIONS", "UNLOADS", "LAST LOAD", "LOAD TIME", "REASON");
    for (const auto& m : s->models)
      out << fmt::format("{:<24} {:<10} {:<10} {:>6} {:>10} {:>8} {:>10} {:>10}  {}\n", m.name,
                         m.on_demand ? (m.pinned ? "pinned" : "on-demand") : "always-on", m.state, m.loads, m.evictions,
                         m.unloads, m.loads && m.on_demand ? fmt::format("{:.1f} s", m.last_load_s) : "-",
                         m.loads && m.on_demand ? fmt::format("{:.1f} s", m.total_load_s) : "-",
                         m.restored_tokens ? fmt::format("{}prompt cache restored: {} tokens", m.reason.empty() ? "" : m.reason + "; ",
                                                         m.restored_tokens)
                                           : m.reason);
  }
  if (!s->nodes.empty()) {
    out << fmt::format("{:<12} {:<24} {:<16} {:<12} {:<14}  {}\n", "NODE", "SSH", "ADDRESS", "STATE", "SINCE", "VERSIONS / ERROR");
    out << fmt::format("{:<12} {:<24} {:<16} {:<12} {:<14}  {}\n", "local", "-", "-", "up", "-", "this machine (controller)");
    for (const auto& n : s->nodes)
      out << fmt::format("{:<12} {:<24} {:<16} {:<12} {:<14}  {}\n", n.name, n.ssh, n.address, n.state,
                         human_duration(now - n.since_wall) + " ago",
                         !n.error.empty() ? n.error
                                          : fmt::format("agifarm {}, llama.cpp {}{}", n.agifarm_version, n.llama_version,
                                                        n.restarts ? fmt::format(", restarted {}x", n.restarts) : ""));
  }
  const bool nodes = !s->nodes.empty();
  out << fmt::format("{:<24} {}{:<11} {:>7} {:>6} {:>8} {:>8} {:>22} {:>9}  {}\n", "BACKEND",
                     nodes ? fmt::format("{:<12} ", "NODE") : "", "STATE", "PID", "PORT",
                     "RESTARTS", "UPTIME", "MEMORY (RSS/PREDICTED)", "IN-FLIGHT", "REASON");
  for (const auto& b : s->backends) {
    const bool remote = b.node != "local";
    bool alive = remote ? b.pid > 0 && b.state != "unreachable" : runs_program(b.pid, b.program);
    std::string mem = !alive ? "-" : remote ? (b.rss_bytes ? human_bytes(b.rss_bytes) : "?")
                                            : human_bytes(supervise::process_rss_bytes(b.pid));
    mem += " / " + (b.predicted_bytes ? human_bytes(b.predicted_bytes) : std::string("-"));
    int f = remote || o.brief ? -1 : in_flight(b);
    out << fmt::format("{:<24} {}{:<11} {:>7} {:>6} {:>8} {:>8} {:>22} {:>9}  {}\n", b.name,
                       nodes ? fmt::format("{:<12} ", b.node) : "", b.state,
                       b.pid ? std::to_string(b.pid) : "-", b.port, b.restarts,
                       b.pid && alive ? human_duration(now - b.started_wall) : "-", mem,
                       f >= 0 ? fmt::format("{}/{}", f, b.slots) : "-", b.reason);
  }
  return 0;
}

int run_down(const control_options& o, int timeout_s, std::ostream& out, std::ostream& err) {
  auto paths = paths_for(o);
  if (!paths) { err << "agifarm down: " << paths.err().message << '\n'; return paths.err().exit_code; }
  auto lock = farm_lock::try_acquire(*paths);
  if (!lock) { err << "agifarm down: " << lock.err().message << '\n'; return 1; }
  auto text = supervise::read_file(paths->state());
  std::optional<farm_state> s;
  if (text) if (auto p = farm_state_from_json(*text); p) s = std::move(*p);
  if (lock->held()) {  // nobody runs the farm
    if (!s) { out << fmt::format("no farm is running in {}\n", paths->dir); return 0; }
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
  if (pid <= 0) { err << "agifarm down: a farm holds " << paths->lock() << " but its pid is unknown\n"; return 1; }
  out << fmt::format("stopping the farm (pid {})\n", pid);
  ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  bool stopped = false;
  while (std::chrono::steady_clock::now() < deadline) {
    auto l = farm_lock::try_acquire(*paths);
    if (l && l->held()) { stopped = true; break; }
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
  out << fmt::format("farm stopped{}; no backend process left\n", left ? fmt::format(" ({} leftover processes killed)", left) : "");
  return stopped ? 0 : 1;
}

int run_logs(const control_options& o, const std::string& name, int lines, std::ostream& out, std::ostream& err) {
  auto paths = paths_for(o);
  if (!paths) { err << "agifarm logs: " << paths.err().message << '\n'; return paths.err().exit_code; }
  if (auto slash = name.find('/'); slash != std::string::npos) {
    // NODE/NAME: a remote node's backend, read over ssh from the node's own state dir.
    std::string node = name.substr(0, slash), backend = name.substr(slash + 1);
    auto text = supervise::read_file(paths->state());
    auto s = text ? farm_state_from_json(*text) : result<farm_state>(make_error("no farm state"));
    if (!s) { err << fmt::format("agifarm logs: no farm with nodes is running in {}\n", paths->dir); return 1; }
    auto n = std::find_if(s->nodes.begin(), s->nodes.end(), [&](auto& x) { return x.name == node; });
    if (n == s->nodes.end()) {
      std::string names;
      for (const auto& x : s->nodes) names += (names.empty() ? "" : ", ") + x.name;
      err << fmt::format("agifarm logs: no node '{}' in this farm (nodes: {})\n", node, names.empty() ? "none" : names);
      return 2;
    }
    auto rn = node_from_record(*n);
    if (!rn) { err << "agifarm logs: " << rn.err().message << '\n'; return 2; }
    auto argv = rn->argv("logs");
    argv.insert(argv.end(), {backend, "-n", std::to_string(lines)});
    auto sh = shell_for(*s);
    auto r = sh.run(rn->target, argv, {}, std::chrono::seconds(30));
    if (!r) { err << "agifarm logs: node " << node << ": " << r.err().message << '\n'; return 1; }
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
      if (f.size() > 4 && f.substr(f.size() - 4) == ".log") names += (names.empty() ? "" : ", ") + f.substr(0, f.size() - 4);
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
