// Fakes for the supervisor's interfaces: a hand-advanced clock, processes that exit when told, a prober
// whose requests the test answers, an in-memory log store and a port allocator. Single-threaded.
#pragma once

#include <signal.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "supervise/clock.hpp"
#include "supervise/files.hpp"
#include "supervise/ports.hpp"
#include "supervise/prober.hpp"
#include "supervise/process.hpp"

namespace agifarm::supervise::testing {

class fake_clock final : public clock {
 public:
  time_point now() const override { return t_; }
  std::int64_t wall_now() const override {
    return 1'700'000'000 + std::chrono::duration_cast<std::chrono::seconds>(t_.time_since_epoch()).count();
  }
  void advance(duration d) { t_ += d; }
  void set(time_point t) { t_ = t; }

 private:
  time_point t_{};
};

struct fake_process {
  int pid = 0;
  spawn_request req;
  bool alive = true;
  std::vector<int> signals;
};

class fake_launcher final : public process_launcher {
 public:
  bool term_exits = true;   // SIGTERM makes the process exit (at the next reap)
  std::string spawn_error;  // non-empty: spawn fails with this message
  std::map<int, fake_process> procs;
  std::vector<int> spawn_order;  // pids

  result<int> spawn(const spawn_request& req) override {
    if (!spawn_error.empty()) return make_error(spawn_error);
    int pid = next_pid_++;
    procs[pid] = fake_process{pid, req, true, {}};
    spawn_order.push_back(pid);
    return pid;
  }
  void signal_group(int pid, int sig) override {
    auto it = procs.find(pid);
    if (it == procs.end()) return;
    it->second.signals.push_back(sig);
    if (it->second.alive && (sig == SIGKILL || (sig == SIGTERM && term_exits))) exit(pid, true, sig);
  }
  std::vector<exit_info> reap() override { return std::exchange(pending_, {}); }

  // Test helpers.
  void exit(int pid, bool signaled, int code) {
    auto& p = procs.at(pid);
    if (!p.alive) return;
    p.alive = false;
    pending_.push_back({pid, signaled, code});
  }
  int live() const {
    return static_cast<int>(
        std::count_if(procs.begin(), procs.end(), [](auto& kv) { return kv.second.alive; }));
  }
  int spawns_of(const std::string& argv0_suffix_port) const {  // processes whose argv contains the text
    int n = 0;
    for (auto& [pid, p] : procs)
      for (auto& a : p.req.argv)
        if (a == argv0_suffix_port) {
          ++n;
          break;
        }
    return n;
  }
  bool alive(int pid) const {
    auto it = procs.find(pid);
    return it != procs.end() && it->second.alive;
  }

 private:
  int next_pid_ = 1000;
  std::vector<exit_info> pending_;
};

class fake_prober final : public prober {
 public:
  std::vector<probe_request> pending;
  std::vector<probe_request> all;

  void start(const probe_request& r) override {
    pending.push_back(r);
    all.push_back(r);
  }
  std::vector<probe_result> poll() override { return std::exchange(done_, {}); }

  // Answers the newest pending request of that backend and kind; false if none.
  bool answer(const std::string& backend, probe_kind kind, probe_outcome outcome) {
    for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
      if (it->backend == backend && it->kind == kind) {
        done_.push_back({it->backend, it->kind, outcome, outcome == probe_outcome::ok ? 200 : 0,
                         to_string(outcome), it->tag});
        pending.erase(std::next(it).base());
        return true;
      }
    }
    return false;
  }
  bool has_pending(const std::string& backend, probe_kind kind) const {
    return std::any_of(pending.begin(), pending.end(),
                       [&](auto& r) { return r.backend == backend && r.kind == kind; });
  }

 private:
  std::vector<probe_result> done_;
};

class fake_files final : public file_system {
 public:
  std::map<std::string, std::vector<std::string>> logs;
  std::vector<std::string> tail(const std::string& path, int n) override {
    auto it = logs.find(path);
    if (it == logs.end()) return {};
    auto& v = it->second;
    return {v.end() - std::min<std::ptrdiff_t>(n, static_cast<std::ptrdiff_t>(v.size())), v.end()};
  }
  void rotate_if_larger(const std::string&, std::uint64_t, int) override { ++rotations; }
  void append_line(const std::string& path, const std::string& line) override { logs[path].push_back(line); }
  int rotations = 0;
};

class fake_ports final : public port_allocator {
 public:
  std::set<int> busy;
  result<int> allocate(const std::string&) override {
    while (busy.count(next_)) ++next_;
    return next_++;
  }
  bool is_free(const std::string&, int port) override { return !busy.count(port); }

 private:
  int next_ = 20000;
};

}  // namespace agifarm::supervise::testing
