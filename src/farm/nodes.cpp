#include "farm/nodes.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>

namespace agifarm::farm {
namespace {
namespace json = boost::json;
namespace fs = std::filesystem;

bool is_loopback(const std::string& h) {
  return h.empty() || h == "localhost" || h.rfind("127.", 0) == 0 || h == "::1";
}
bool is_any(const std::string& h) { return h == "0.0.0.0" || h == "::" || h == "[::]"; }

std::int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string last_lines(const std::string& text, std::size_t n) {
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string l; std::getline(is, l);)
    if (!l.empty()) lines.push_back(l);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "\n    | " + lines[i];
  return out;
}

}  // namespace

std::vector<std::string> remote_node::argv(const std::string& verb) const {
  std::vector<std::string> a{agifarm.empty() ? "agifarm" : agifarm, "node", verb};
  if (verb == "info") {
    if (!llama_bin.empty()) a.insert(a.end(), {"--llama-bin", llama_bin});
    return a;
  }
  a.insert(a.end(), {"--name", name});
  if (!state_dir.empty()) a.insert(a.end(), {"--state-dir", state_dir});
  if (verb == "up" && !llama_bin.empty()) a.insert(a.end(), {"--llama-bin", llama_bin});
  return a;
}

std::string make_backend_key() {
  unsigned char raw[32] = {};
  std::ifstream in("/dev/urandom", std::ios::binary);
  in.read(reinterpret_cast<char*>(raw), sizeof raw);
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  return hex;
}

result<farm_split> split_farm(const plan::deployment& d, const hw::inventory& inv,
                              const std::string& backend_key, bool allow_public) {
  farm_split s;
  s.all = d;
  s.local.strategy = d.strategy;
  // Which node each backend is on, and whether that node is this machine.
  std::map<std::string, std::string> node_of;  // backend -> node name ("local" for this machine)
  std::set<std::string> sshless;
  std::map<std::string, const hw::node*> remote;
  for (auto& b : s.all.backends) {
    if (b.node.empty() || b.node == "local") {
      node_of[b.name] = "local";
      continue;
    }
    const hw::node* n = inv.find_node(b.node);
    if (!n)
      return make_error(fmt::format("backend '{}' runs on node '{}', which the inventory ({}) does not have",
                                    b.name, b.node, inv.source.empty() ? "none given" : inv.source),
                        2);
    if (n->ssh.empty()) {
      sshless.insert(n->name);
      node_of[b.name] = "local";
      continue;
    }
    node_of[b.name] = n->name;
    remote[n->name] = n;
  }
  if (sshless.size() > 1) {
    std::string names;
    for (const auto& n : sshless) names += (names.empty() ? "" : ", ") + n;
    return make_error(
        fmt::format("nodes {} have no `ssh:` in the inventory: only one node (the machine `agifarm up` runs "
                    "on) may lack it; give the others `ssh: user@host`",
                    names),
        2);
  }
  // Rewrite remote backends for their node.
  for (auto& b : s.all.backends) {
    const std::string& nn = node_of[b.name];
    if (nn == "local") continue;
    const hw::node& n = *remote.at(nn);
    if (is_any(b.host) && !allow_public)
      return make_error(
          fmt::format("backend '{}' on node '{}' binds {} (every network): backends listen only on their "
                      "node's address unless the farm opts in with allow_public_bind: true",
                      b.name, nn, b.host),
          2);
    if (is_loopback(b.host)) {
      if (b.kind == plan::backend_kind::llama_server)
        b.host = n.address;
      else {
        // An rpc server on loopback is reachable only from its own node.
        for (const auto& o : s.all.backends)
          for (const auto& dep : o.depends_on)
            if (dep == b.name && node_of[o.name] != nn)
              return make_error(
                  fmt::format("rpc server '{}' on node '{}' binds {}, but '{}' on node '{}' uses it: it "
                              "must listen on its node's address ({})",
                              b.name, nn, b.host, o.name, node_of[o.name], n.address),
                  2);
      }
    }
    if (b.kind == plan::backend_kind::llama_server) b.env[std::string(plan::k_api_key_env)] = backend_key;
  }
  // Node order: a node whose backends others depend on starts first.
  std::map<std::string, std::set<std::string>> needs;  // node -> nodes it depends on
  for (const auto& [name, n] : remote) needs[name];
  bool local_first = false, local_after = false;
  for (const auto& b : s.all.backends)
    for (const auto& dep : b.depends_on) {
      auto it = node_of.find(dep);
      if (it == node_of.end())
        return make_error(
            fmt::format("backend '{}' depends on '{}', which is not in the deployment", b.name, dep), 2);
      const std::string& from = node_of[b.name];
      const std::string& to = it->second;
      if (from == to) continue;
      if (to == "local")
        local_first = true;
      else if (from == "local")
        local_after = true;
      else
        needs[from].insert(to);
    }
  if (local_first && local_after)
    return make_error(
        "this machine's backends and a remote node's depend on each other both ways; put the rpc servers of "
        "a shard on nodes other than the one whose llama-server uses them, or all on one side",
        2);
  std::set<std::string> placed;
  while (placed.size() < needs.size()) {
    bool progress = false;
    for (const auto& [name, deps] : needs) {
      if (placed.count(name)) continue;
      if (std::all_of(deps.begin(), deps.end(), [&](auto& x) { return placed.count(x) > 0; })) {
        const hw::node& n = *remote.at(name);
        auto t = remote::parse_ssh_target(n.ssh);
        if (!t) return make_error(fmt::format("node '{}': {}", name, t.err().message), 2);
        remote_node rn;
        rn.name = name;
        rn.target = *t;
        rn.address = n.address;
        if (!n.agifarm_path.empty()) rn.agifarm = n.agifarm_path;
        rn.llama_bin = n.llama_bin;
        rn.state_dir = n.state_dir;
        s.nodes.push_back(std::move(rn));
        placed.insert(name);
        progress = true;
      }
    }
    if (!progress) return make_error("the nodes' backends depend on each other in a cycle", 2);
  }
  // The parts.
  for (const auto& b : s.all.backends) {
    const std::string& nn = node_of[b.name];
    plan::backend_spec copy = b;
    std::vector<std::string> deps;
    for (const auto& dep : b.depends_on)
      if (node_of[dep] == nn) deps.push_back(dep);
    copy.depends_on = deps;
    if (nn == "local") {
      copy.node = "local";
      s.local.backends.push_back(std::move(copy));
    } else {
      copy.node = "local";  // on the node it is the node daemon's own
      auto& part = s.per_node[nn];
      part.strategy = d.strategy;
      part.backends.push_back(std::move(copy));
    }
  }
  return s;
}

// ---- node info -------------------------------------------------------------------------------------

std::string node_info_json(const std::string& llama_bin) {
  std::error_code ec;
  json::object o{{"agifarm_version", k_agifarm_version},
                 {"llama_bin", llama_bin},
                 {"llama_server", fs::exists(llama_bin + "/llama-server", ec)},
                 {"rpc_server", fs::exists(llama_bin + "/ggml-rpc-server", ec)}};
  std::string version;
  if (fs::exists(llama_bin + "/llama-server", ec)) {
    std::string cmd = "'" + llama_bin + "/llama-server' --version 2>&1";
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p)) {
        std::string l(buf);
        while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
        if (l.rfind("version:", 0) == 0) version = l.substr(l.find(':') + 2);
      }
      ::pclose(p);
    }
  }
  o["llama_version"] = version;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  o["hostname"] = host;
  return json::serialize(o);
}

result<node_info> parse_node_info(std::string_view text, const std::string& node) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object())
    return make_error(
        fmt::format("node {}: `agifarm node info` did not print JSON (an older agifarm there?)", node));
  const auto& o = v.as_object();
  node_info i;
  auto s = [&](const char* k) {
    auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->as_string()) : std::string();
  };
  auto b = [&](const char* k) {
    auto* x = o.if_contains(k);
    return x && x->is_bool() && x->as_bool();
  };
  i.agifarm_version = s("agifarm_version");
  i.llama_bin = s("llama_bin");
  i.llama_version = s("llama_version");
  i.hostname = s("hostname");
  i.llama_server = b("llama_server");
  i.rpc_server = b("rpc_server");
  if (i.agifarm_version.empty())
    return make_error(fmt::format("node {}: `agifarm node info` has no agifarm_version", node));
  return i;
}

// ---- the fleet -------------------------------------------------------------------------------------

node_fleet::node_fleet(std::vector<remote_node> nodes, std::map<std::string, plan::deployment> parts,
                       remote::remote_shell& sh, fleet_options o, wall_clock wall)
    : nodes_(std::move(nodes)),
      parts_(std::move(parts)),
      sh_(sh),
      o_(o),
      wall_(wall ? std::move(wall) : wall_clock(wall_now)) {
  for (const auto& n : nodes_) {
    auto e = std::make_unique<entry>();
    e->st.name = n.name;
    e->st.since_wall = wall_();
    e->backoff_s = o_.restart_backoff_initial.count();
    entries_.push_back(std::move(e));
  }
}

void node_fleet::set_state(entry& e, const std::string& state, const std::string& error) {
  if (e.st.state != state) e.st.since_wall = wall_();
  e.st.state = state;
  e.st.error = error;
}

status node_fleet::check(const say_fn& say) {
  std::vector<std::future<std::string>> jobs;  // "" = fine, else the problem
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    jobs.push_back(std::async(std::launch::async, [this, i]() -> std::string {
      const auto& n = nodes_[i];
      auto r = sh_.run(n.target, n.argv("info"), {}, o_.info_timeout);
      std::string where = fmt::format("node {} ({})", n.name, n.target.text());
      if (!r) return fmt::format("{}: cannot reach it: {}", where, r.err().message);
      if (r->exit_code == 127 || r->err.find("not found") != std::string::npos)
        return fmt::format(
            "{}: agifarm is not installed there ('{}' not found): install agifarm {} on it (scripts/setup.sh "
            "and the build), or set `agifarm: /path/to/agifarm` for the node in the inventory",
            where, n.agifarm, k_agifarm_version);
      if (r->exit_code != 0)
        return fmt::format("{}: `agifarm node info` failed (exit {}): {}", where, r->exit_code,
                           last_lines(r->err + r->out, 3));
      auto info = parse_node_info(r->out, n.name);
      if (!info) return where + ": " + info.err().message;
      {
        std::lock_guard lk(entries_[i]->mu);
        entries_[i]->st.agifarm_version = info->agifarm_version;
        entries_[i]->st.llama_version = info->llama_version;
      }
      if (info->agifarm_version != k_agifarm_version)
        return fmt::format("{}: agifarm {} there, {} here: install the same version on every node", where,
                           info->agifarm_version, k_agifarm_version);
      bool needs_server = false, needs_rpc = false;
      if (auto p = parts_.find(n.name); p != parts_.end())
        for (const auto& b : p->second.backends) {
          needs_server |= b.kind == plan::backend_kind::llama_server;
          needs_rpc |= b.kind == plan::backend_kind::rpc_server;
        }
      if ((needs_server && !info->llama_server) || (needs_rpc && !info->rpc_server))
        return fmt::format(
            "{}: llama.cpp is not there: no {} in {} (build it there with scripts/setup.sh, or set "
            "`llama_bin:` for the node in the inventory)",
            where, needs_server && !info->llama_server ? "llama-server" : "ggml-rpc-server", info->llama_bin);
      return "";
    }));
  std::vector<std::string> problems;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    std::string p = jobs[i].get();
    if (p.empty()) {
      std::lock_guard lk(entries_[i]->mu);
      say(fmt::format(
          "node {} ({}): agifarm {}, llama.cpp {}", nodes_[i].name, nodes_[i].target.text(),
          entries_[i]->st.agifarm_version,
          entries_[i]->st.llama_version.empty() ? "(version unknown)" : entries_[i]->st.llama_version));
    } else {
      say(p);
      problems.push_back(p);
    }
  }
  if (!problems.empty())
    return make_error(problems.size() == 1
                          ? problems[0]
                          : fmt::format("{} nodes cannot run their part (see above)", problems.size()));
  return {};
}

result<std::string> node_fleet::start_node(std::size_t i) {
  const auto& n = nodes_[i];
  auto part = parts_.find(n.name);
  if (part == parts_.end()) return make_error(fmt::format("node {}: no backends to start", n.name));
  std::string input = json::serialize(plan::to_json(part->second));
  auto r = sh_.run(n.target, n.argv("up"), input, o_.start_timeout);
  if (!r) return make_error(fmt::format("node {}: {}", n.name, r.err().message));
  if (r->exit_code != 0)
    return make_error(fmt::format("node {}: its farm daemon did not start (exit {}):{}", n.name, r->exit_code,
                                  last_lines(r->out + r->err, 12)));
  return r->out;
}

status node_fleet::start(const say_fn& say) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const auto& n = nodes_[i];
    std::string names;
    if (auto p = parts_.find(n.name); p != parts_.end())
      for (const auto& b : p->second.backends) names += (names.empty() ? "" : ", ") + b.name;
    say(fmt::format("node {}: starting {} over ssh {}", n.name, names, n.target.text()));
    auto r = start_node(i);
    if (!r) {
      {
        std::lock_guard lk(entries_[i]->mu);
        set_state(*entries_[i], "failed", r.err().message);
      }
      say(r.err().message);
      // Nothing left anywhere: stop this node (it may have started part of its backends) and those before.
      for (std::size_t j = i + 1; j-- > 0;) {
        auto d = sh_.run(nodes_[j].target, nodes_[j].argv("down"), {}, o_.stop_timeout);
        say(fmt::format("node {}: {}", nodes_[j].name, d && d->exit_code == 0 ? "stopped" : "stop failed"));
      }
      return make_error(r.err().message);
    }
    std::istringstream is(*r);
    for (std::string l; std::getline(is, l);)
      if (!l.empty()) say(fmt::format("  {} | {}", n.name, l));
    std::lock_guard lk(entries_[i]->mu);
    set_state(*entries_[i], "starting", "");
  }
  return {};
}

bool node_fleet::poll(std::size_t i) {
  const auto& n = nodes_[i];
  entry& e = *entries_[i];
  auto r = sh_.run(n.target, n.argv("status"), {}, o_.poll_timeout);
  std::unique_lock lk(e.mu);
  const std::string before_state = e.st.state;
  if (!r) {
    // One slow answer (a busy machine, a slow login shell) is not a lost node: it takes
    // unreachable_after failures in a row. A failed connection is: sshd itself did not answer.
    const bool connection_failed = r.err().exit_code == remote::k_exit_connection_failed;
    if (++e.failures < o_.unreachable_after && !connection_failed && e.st.state != "unreachable")
      return false;
    if (e.st.state == "unreachable") {
      e.st.error = r.err().message;
      return false;
    }
    set_state(e, "unreachable", r.err().message);
    return true;
  }
  e.failures = 0;
  if (r->exit_code == 0) {
    auto s = farm_state_from_json(r->out);
    if (!s) {
      set_state(e, "unreachable", fmt::format("node {}: bad status: {}", n.name, s.err().message));
      return before_state != "unreachable";
    }
    bool changed = e.st.state != "up" || s->backends.size() != e.st.backends.size();
    for (auto& b : s->backends) {
      b.node = n.name;
      for (const auto& old : e.st.backends)
        if (old.name == b.name &&
            (old.state != b.state || old.port != b.port || old.pid != b.pid || old.host != b.host))
          changed = true;
    }
    e.st.backends = std::move(s->backends);
    set_state(e, "up", "");
    e.backoff_s = o_.restart_backoff_initial.count();
    return changed;
  }
  // The node answers but runs no farm: its daemon died or the machine rebooted. Start it again.
  for (auto& b : e.st.backends) {
    b.state = "stopped";
    b.pid = 0;
  }
  const std::int64_t now = wall_();
  if (e.st.state != "down" && e.st.state != "restarting") {
    set_state(e, "down", "its farm daemon is not running");
    e.next_restart = now;  // the first restart at once
  }
  if (now < e.next_restart) return before_state != e.st.state;
  set_state(e, "restarting", "");
  lk.unlock();  // a start takes as long as loading the models; snapshot() must not wait for it
  auto started = start_node(i);
  lk.lock();
  ++e.st.restarts;
  if (!started) {
    set_state(e, "down", started.err().message);
    e.next_restart = wall_() + e.backoff_s;
    e.backoff_s = std::min<std::int64_t>(e.backoff_s * 2, o_.restart_backoff_cap.count());
  } else {
    set_state(e, "starting", "");
  }
  return true;
}

void node_fleet::stop(const say_fn& say) {
  std::vector<std::future<std::string>> jobs;
  for (std::size_t k = nodes_.size(); k-- > 0;)
    jobs.push_back(std::async(std::launch::async, [this, k] {
      const auto& n = nodes_[k];
      auto r = sh_.run(n.target, n.argv("down"), {}, o_.stop_timeout);
      if (!r) return fmt::format("node {}: could not stop it: {}", n.name, r.err().message);
      if (r->exit_code != 0)
        return fmt::format("node {}: `agifarm node down` failed:{}", n.name, last_lines(r->out + r->err, 4));
      return fmt::format("node {}: stopped", n.name);
    }));
  for (auto& j : jobs) say(j.get());
}

std::vector<node_status> node_fleet::snapshot() const {
  std::vector<node_status> out;
  for (const auto& e : entries_) {
    std::lock_guard lk(e->mu);
    out.push_back(e->st);
  }
  return out;
}

// ---- the gateway's view ------------------------------------------------------------------------------

std::map<std::string, replica_state> replica_view(const plan::deployment& all,
                                                  const std::vector<backend_record>& local,
                                                  const std::vector<node_status>& nodes) {
  struct where {
    const backend_record* rec = nullptr;
    const node_status* node = nullptr;  // null: this machine
  };
  std::map<std::string, where> at;
  for (const auto& r : local) at[r.name] = {&r, nullptr};
  for (const auto& n : nodes)
    for (const auto& r : n.backends) at[r.name] = {&r, &n};
  std::map<std::string, const node_status*> node_by_name;
  for (const auto& n : nodes) node_by_name[n.name] = &n;
  // Why a backend cannot serve ("" = it can).
  auto down_reason = [&](const plan::backend_spec& b) -> std::string {
    if (!b.node.empty() && b.node != "local") {
      auto n = node_by_name.find(b.node);
      if (n != node_by_name.end() && n->second->state != "up")
        return fmt::format("node {} is {}{}", b.node, n->second->state,
                           n->second->error.empty() ? "" : " (" + n->second->error + ")");
    }
    auto w = at.find(b.name);
    if (w == at.end()) return "not started yet";
    if (w->second.rec->state != "ready") return "it is " + w->second.rec->state;
    return "";
  };
  std::map<std::string, replica_state> out;
  for (const auto& b : all.backends) {
    if (b.kind != plan::backend_kind::llama_server) continue;
    replica_state s;
    if (auto w = at.find(b.name); w != at.end() && w->second.rec->port > 0)
      s.url = fmt::format("http://{}:{}",
                          w->second.rec->host.find(':') != std::string::npos ? "[" + w->second.rec->host + "]"
                                                                             : w->second.rec->host,
                          w->second.rec->port);
    s.reason = down_reason(b);
    if (s.reason.empty())
      for (const auto& dep : b.depends_on) {
        auto d =
            std::find_if(all.backends.begin(), all.backends.end(), [&](auto& x) { return x.name == dep; });
        if (d == all.backends.end()) continue;
        std::string why = down_reason(*d);
        if (!why.empty()) {
          s.reason = fmt::format("rpc server {} is down: {}", dep, why);
          break;
        }
      }
    s.ready = s.reason.empty();
    out[b.name] = std::move(s);
  }
  return out;
}

}  // namespace agifarm::farm
