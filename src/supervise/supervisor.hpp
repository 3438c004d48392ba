// supervisor: starts, watches, restarts and stops the backend processes of one plan::deployment on
// this machine. Every backend is started with exactly plan::backend_argv(spec, llama_bin, port); the
// supervisor adds no arguments of its own.
//
// Lifecycle of one backend:
//
//            deps ready              /health 200 (rpc: TCP connect)
//   waiting ------------> starting ------------------------------> ready
//      ^                   |    |                                   |
//      |  a dependency     |    | not ready in start_timeout,       | exited, /health failing, or
//      |  left ready       |    | or exited                         | wedged (1-token probe hangs)
//      |  (restart         v    v                                   v
//      |   without     [stopping: SIGTERM to the process group, SIGKILL after stop_timeout]
//      |   penalty)        |                                        |
//      +-------------------+        crash (counted) <---------------+
//                                      |
//                 fewer than max_failures in failure_window?
//                  yes: backoff (1 s, 2 s, 4 s ... capped; reset after healthy_reset of ready time)
//                       --timer--> starting (or waiting if a dependency is not ready)
//                  no:  failed (terminal; reason = the telling line of the backend's log)
//
//   stop_all(): every backend -> stopping -> stopped (dependents before the backends they use);
//   waiting/backoff -> stopped at once. A dependency that fails makes its dependents fail.
//
//   On demand (supervisor_options::on_demand): such a backend begins `stopped` and stays there until
//   start_backend() (stopped/failed -> waiting, a fresh failure count); stop_backend() takes it back to
//   stopped (starting/ready -> stopping -> stopped; waiting/backoff -> stopped at once), which is not a
//   crash. all_settled() counts a stopped on-demand backend as settled.
//
// Driving: the owner calls step() whenever something may have happened (a child exited, a probe
// finished, a timer is due); step() returns the instant of the next timer. The supervisor itself never
// sleeps or blocks, so unit tests drive it with a fake clock, fake launcher and fake prober.
//
// Thread-safety: none; one thread owns the supervisor and calls every method. `events` callbacks run on
// that thread inside step()/stop_all().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "plan/deployment.hpp"
#include "supervise/clock.hpp"
#include "supervise/files.hpp"
#include "supervise/ports.hpp"
#include "supervise/prober.hpp"
#include "supervise/process.hpp"

namespace agifarm::supervise {

using namespace std::chrono_literals;

struct supervisor_options {
  std::string llama_bin;  // directory holding llama-server and ggml-rpc-server
  std::string log_dir;    // <log_dir>/<backend>.log
  duration backoff_initial = 1s;
  duration backoff_cap = 300s;
  duration healthy_reset = 600s;  // a run ready this long resets backoff and the failure count
  int max_failures = 5;           // this many failures within failure_window -> failed
  duration failure_window = 600s;
  duration start_timeout = 600s;  // spawn -> ready
  duration health_interval_starting = 250ms;
  duration health_interval_ready = 2s;
  duration health_timeout = 3s;
  int health_failures_to_restart = 3;  // consecutive failed /health of a ready backend
  duration probe_interval = 30s;       // 1-token completion probe of ready llama-servers; 0 = off
  duration probe_timeout = 60s;
  int probe_failures_to_restart = 2;  // consecutive hung probes (not "busy") -> wedged -> restart
  duration stop_timeout = 10s;        // SIGTERM -> SIGKILL
  std::uint64_t log_max_bytes = 16ull << 20;
  int log_keep = 3;
  duration log_check_interval = 10s;
  duration progress_interval = 500ms;  // how often a starting backend's last log line is reported
  std::vector<std::string> on_demand;  // backends started only by start_backend()
};

enum class backend_state { waiting, starting, ready, backoff, stopping, failed, stopped };
std::string to_string(backend_state s);

struct backend_status {
  std::string name;
  plan::backend_kind kind = plan::backend_kind::llama_server;
  std::string host;
  int port = 0;
  backend_state state = backend_state::waiting;
  int pid = 0;                        // 0 when no process
  int restarts = 0;                   // spawn attempts after the first
  int failures = 0;                   // failures counted in the current window
  std::string last_exit;              // "exit status 1", "killed by signal 9 (Killed)"
  std::string reason;                 // why it last crashed, was restarted, or failed
  std::vector<std::string> log_tail;  // the backend's last log lines at its last failure
  std::int64_t started_wall = 0;      // unix seconds of the current process's start
  time_point started_at{};
  time_point ready_at{};
  time_point next_start{};  // in backoff: when it starts again
  std::string log_path;
  std::vector<std::string> argv;  // of the current or last process
};

struct supervisor_events {
  std::function<void(const backend_status&)> on_change;  // state, pid or reason changed
  std::function<void(const std::string& backend, const std::string& line)> on_progress;  // while starting
};

class supervisor {
 public:
  supervisor(plan::deployment d, supervisor_options o, clock& c, process_launcher& l, prober& p,
             file_system& f, port_allocator& ports, supervisor_events ev = {});

  // Checks names and depends_on (unknown names, cycles), orders backends so dependencies come first,
  // and resolves ports: port 0 gets a free one, a given port must be free. Call once, before step().
  status prepare();
  // Resolved ports, valid after prepare() (the gateway's config needs them before the backends start).
  const std::vector<backend_status>& backends() const { return status_; }
  const plan::deployment& deployment() const { return d_; }

  time_point step();
  void stop_all();
  // On-demand control (any backend): unknown names are errors; starting one that is already starting
  // or ready, or stopping one already stopped, is a no-op.
  status start_backend(const std::string& name);
  status stop_backend(const std::string& name, const std::string& reason);
  std::optional<std::size_t> find(const std::string& name) const;
  bool stopping() const { return shutting_down_; }
  bool all_stopped() const;  // every backend stopped or failed, and no process left
  bool all_settled() const;  // every backend ready or failed (start-up is over)

 private:
  enum class after_stop { stopped, waiting, crash, failed };
  struct slot {
    std::vector<std::size_t> deps;
    std::vector<std::size_t> dependents;
    std::uint64_t gen = 0;
    int spawns = 0;
    time_point start_deadline{}, next_health{}, next_probe{}, stop_deadline{}, next_progress{};
    bool health_in_flight = false, probe_in_flight = false, killed = false;
    int health_fail = 0, probe_fail = 0;
    duration backoff{};
    std::deque<time_point> failures;
    after_stop then = after_stop::stopped;
    std::string pending_reason;
    std::string last_progress;
  };

  void handle_exit(std::size_t i, const exit_info& e, time_point now);
  void handle_probe(std::size_t i, const probe_result& r, time_point now);
  void advance(std::size_t i, time_point now);
  void spawn(std::size_t i, time_point now);
  void kill_for(std::size_t i, after_stop then, std::string reason, time_point now);
  void record_failure(std::size_t i, std::string reason, time_point now, bool was_ready);
  void fail(std::size_t i, std::string reason);
  void left_ready(std::size_t i, time_point now);
  void set_state(std::size_t i, backend_state s);
  void changed(std::size_t i);
  bool deps_ready(std::size_t i) const;
  bool has_live_dependent(std::size_t i) const;
  bool running(std::size_t i) const;

  plan::deployment d_;
  supervisor_options o_;
  clock& clock_;
  process_launcher& launcher_;
  prober& prober_;
  file_system& files_;
  port_allocator& ports_;
  supervisor_events ev_;
  std::vector<backend_status> status_;  // index-aligned with d_.backends (after prepare's reordering)
  std::vector<slot> slots_;
  bool prepared_ = false;
  bool shutting_down_ = false;
  time_point next_log_check_{};
};

}  // namespace agifarm::supervise
