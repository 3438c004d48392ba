// state: the files a running farm keeps in its state directory, so `agifarm status`, `down` and `logs`
// work from another terminal and a later `up` finds (or cleans up after) an earlier one.
//
//   <state_dir>/farm.lock        an OFD write lock held by the running farm for its whole life: a second
//                                `up` cannot take it (twin), and it frees itself when the farm dies
//   <state_dir>/farm.json        farm_state below, rewritten atomically on every backend state change
//   <state_dir>/farm.pid         the supervisor's pid (the daemon's with --detach)
//   <state_dir>/logs/<name>.log  each backend's stdout+stderr (rotated: .1, .2, ...)
//   <state_dir>/agifarm.log      the detached daemon's own output
//   <state_dir>/models/          the tiny demo model of the embedded default farm
//   <state_dir>/farm-plan.json   the plan document of a farm planned from its farm file (dashboard)
//   <state_dir>/measured-memory.json  measured vs predicted memory per model and device kind, kept
//                                across farms: the next plan's margins (farm/memory_feedback.hpp)
//
// Plain data and pure functions, except farm_lock (owns a file descriptor; not thread-safe).
#pragma once

#include <boost/json.hpp>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"

namespace agifarm::plan {
struct backend_spec;
struct deployment;
}  // namespace agifarm::plan
namespace agifarm::gateway {
struct memory_row;
}  // namespace agifarm::gateway

namespace agifarm::farm {

struct farm_paths {
  std::string dir;
  std::string lock() const { return dir + "/farm.lock"; }
  std::string state() const { return dir + "/farm.json"; }
  std::string pid() const { return dir + "/farm.pid"; }
  std::string logs() const { return dir + "/logs"; }
  std::string log(const std::string& backend) const { return logs() + "/" + backend + ".log"; }
  std::string daemon_log() const { return dir + "/agifarm.log"; }
  std::string models() const { return dir + "/models"; }
  // The plan document of a farm planned from its farm file (the dashboard's strategy table).
  std::string plan() const { return dir + "/farm-plan.json"; }
  // Measured memory per model and device kind, read by the next plan (farm/memory_feedback.hpp).
  std::string memory() const { return dir + "/measured-memory.json"; }
};

// One device's buffers (llama.cpp's name: CUDA0, RPC0[host:port], or "host" for every host buffer).
struct device_memory_record {
  std::string device;
  std::uint64_t model_bytes = 0;
  std::uint64_t kv_bytes = 0;       // KV cache (and recurrent state)
  std::uint64_t compute_bytes = 0;  // compute graph (and output buffer)
  std::uint64_t total() const { return model_bytes + kv_bytes + compute_bytes; }
};

struct backend_record {
  std::string name;
  std::string kind;  // llama-server | ggml-rpc-server
  std::string model;
  std::string host;
  int port = 0;
  int pid = 0;
  std::string state;  // supervise::backend_state as text
  int restarts = 0;
  std::string reason;
  std::string last_exit;
  std::int64_t started_wall = 0;  // unix seconds of the current process's start
  std::string log_path;
  std::string program;  // argv[0]: `down` checks a pid still runs it before signalling
  int slots = 1;
  std::uint64_t predicted_bytes = 0;  // all devices + host, from the plan; 0 = not predicted
  std::string node = "local";         // inventory node; "local" = the machine of this state dir
  std::uint64_t rss_bytes = 0;        // remote backends: RSS as the node last reported it
  std::vector<device_memory_record> predicted_devices;  // per device, from the plan (empty: not predicted)
  std::vector<device_memory_record> measured_devices;   // per device, as llama-server printed them at load
};

// A remote node of a multi-node farm (farm/nodes.hpp), as the controller last saw it. Holds no secret.
struct node_record {
  std::string name;
  std::string ssh;  // user@host[:port]
  std::string address;
  std::string agifarm;          // the agifarm binary there
  std::string llama_bin;        // "" = its default
  std::string state_dir;        // "" = its default
  std::string state;            // starting | up | unreachable | restarting | down | failed
  std::int64_t since_wall = 0;  // unix seconds when it entered `state`
  std::string error;            // the last error talking to it
  int restarts = 0;             // times the controller started its daemon again
  std::string agifarm_version, llama_version;
};

struct pool_record {
  std::string name;
  std::vector<std::string> aliases;
  std::vector<std::string> backends;
};

// A model's on-demand life (farm file `on_demand: true`; docs/on-demand.md).
struct model_record {
  std::string name;
  std::string state;  // loaded | loading | unloaded | evicted | stopping
  bool on_demand = false;
  bool pinned = false;
  std::int64_t loads = 0, evictions = 0, unloads = 0;
  double last_load_s = 0, total_load_s = 0;            // seconds from start to ready
  std::string reason;                                  // why it waits, or why it could not load
  std::int64_t saved_tokens = 0, restored_tokens = 0;  // prompt cache saved at stops, restored at loads
};

struct farm_state {
  int supervisor_pid = 0;
  std::int64_t started_wall = 0;
  std::string phase;     // starting | running | stopping
  std::string endpoint;  // "http://127.0.0.1:8080" once the gateway listens, else ""
  std::string strategy;
  std::string source;  // farm file path, plan file path, or "embedded default"
  std::vector<backend_record> backends;
  std::vector<pool_record> pools;
  std::vector<node_record> nodes;        // remote nodes (empty: a farm of this machine only)
  std::vector<std::string> ssh_options;  // the farm file's ssh_options, for `down`/`logs` over SSH
  std::vector<model_record> models;      // farms with on-demand models only (else empty, not written)
};

boost::json::object to_json(const farm_state& s);
result<farm_state> farm_state_from_json(std::string_view text);  // errors name the field

// The default state directory: $AGIFARM_STATE_DIR, else $XDG_STATE_HOME/agifarm, else ~/.local/state/agifarm.
std::string default_state_dir();
// The default llama.cpp binaries: $AGIFARM_LLAMA_BIN, else
// ~/.cache/agifarm/llama.cpp-node-llama-cpp-3.22.1/build/bin.
std::string default_llama_bin();

// An exclusive, non-blocking open-file-description lock (fcntl F_OFD_SETLK) on <state_dir>/farm.lock.
// OFD locks, unlike flock, can be queried without being taken (is_held): `status` looking must never
// make a concurrent `up` believe a farm is running. A forked daemon shares the lock with its parent.
class farm_lock {
 public:
  farm_lock() = default;
  farm_lock(farm_lock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  farm_lock& operator=(farm_lock&& o) noexcept;
  ~farm_lock();
  // ok + held(): we own the farm; ok + !held(): another live process owns it; error: cannot open.
  static result<farm_lock> try_acquire(const farm_paths& p);
  // Whether a live process holds the lock, without taking it (false when the file does not exist).
  static bool is_held(const farm_paths& p);
  bool held() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void release();

 private:
  int fd_ = -1;
};

// ---- status: defined in control.cpp (the farm library), not part of the fuzz build ------------------

// The JSON of `agifarm status --json` and of the dashboard's GET /agifarm/status: the state file plus
// what is live (process alive, uptime, RSS, slots busy, measured vs predicted memory per device, the
// last log lines, the gateway's counters per pool from its /metrics, the plan's strategy table when
// the farm came from a plan file). One builder for both (docs/dashboard.md lists the fields).
struct status_options {
  bool brief = false;  // skip the per-backend HTTP calls (slots busy)
  int log_lines = 8;   // last lines of each local backend's log
};
boost::json::object status_json(const farm_paths& paths, const farm_state& s, const status_options& o);

// Measured vs predicted per device of one backend: rows of {device, predicted, measured, diff_bytes,
// diff_pct}, predicted devices matched to measured ones by their name before '[' (RPC0[...]).
boost::json::array memory_rows(const backend_record& b);

// The same for every backend, as the gateway's /metrics shows it (gateway::render_memory).
std::vector<gateway::memory_row> memory_metric_rows(const farm_state& s);

// The buffers a backend's llama-server printed at its last start (read from its log, remembered per
// process start once complete); empty until the load has printed them.
std::vector<device_memory_record> measured_devices(const std::string& log_path, std::int64_t started_wall);

// The plan's prediction of one backend per device ("host" last); empty when not predicted.
std::vector<device_memory_record> predicted_devices(const plan::backend_spec& b);

// Makes every llama-server of the deployment print its buffers at load (-lv 4), unless its arguments
// already set a verbosity: measured memory is read from those lines (docs/dashboard.md).
void log_buffers_at_load(plan::deployment& d);

// Rebuilds status_json from the state directory once a second on a thread of its own, so the gateway
// answers the dashboard from memory (never blocking a gateway worker on HTTP or files).
class status_cache {
 public:
  explicit status_cache(farm_paths paths);
  ~status_cache();
  status_cache(const status_cache&) = delete;
  status_cache& operator=(const status_cache&) = delete;
  std::string latest() const;  // serialised JSON ({"running":false} before the first build)
  std::vector<gateway::memory_row> memory() const;  // memory_metric_rows of the last build
  void stop();

 private:
  void refresh();
  farm_paths paths_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string latest_;
  std::vector<gateway::memory_row> memory_;
  std::thread thread_;
};

}  // namespace agifarm::farm
