// gateway: one OpenAI-compatible HTTP endpoint over the pools of replicas of a farm.
//
// This is the embedding API (used by `agifarm serve` and by the farm runner). A `server` is built from
// a plain `config` (parse one from YAML with load_config / config_from_yaml in gateway/config.hpp, or
// build it from a plan::deployment with farm::gateway_config_from_deployment in farm/gateway_config.hpp).
//
// Lifecycle (one-way):
//
//   constructed --start()--> running --stop(drain)--> stopped
//        \--start() fails (bind, usage db)--> constructed (may be destroyed, or started again)
//
// Thread-safety: start(), stop() and the destructor are called from one owning thread. While running,
// set_replica_ready(), set_replica_url(), port(), snapshot() are safe from any thread. The server owns its
// worker threads (config.threads, 0 = one per core), each running its own io_context; stop() joins them. The
// destructor calls stop() with the configured drain timeout if still running.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace agifarm::gateway {

class fail_count;

enum class balance { least_outstanding, prefix_affinity };

struct replica_config {
  std::string name;  // unique across the whole config (backend name), e.g. "qwen3-8b-r0"
  std::string url;   // "http://127.0.0.1:8081" (http only; host must be a numeric IPv4/IPv6 or "localhost")
  std::string api_key = {};  // sent to the backend as "Authorization: Bearer <key>" (llama-server --api-key /
                             // $LLAMA_API_KEY); "" = none. Never logged, never in /metrics or errors.
};

struct pool_config {
  std::string name;                  // model name clients ask for
  std::vector<std::string> aliases;  // role names routed here ("fast", "code", "think", ...)
  balance policy = balance::least_outstanding;
  int slots_per_replica = 1;             // concurrent requests per replica before queueing (llama-server -np)
  int priority = 0;                      // higher is served first when freed slots are contended
  std::vector<replica_config> replicas;  // a replica name may appear in several pools (shared slots)
  // Loaded on demand (docs/on-demand.md): with no ready replica a request waits in the queue (up to
  // load_timeout_ms) and config::on_demand_wanted is told, instead of a 503 at once.
  bool on_demand = false;
  int load_timeout_ms = 600000;
};

struct api_key_config {
  std::string name;                 // shown in usage and metrics; never the key itself
  std::string key;                  // the secret (from `key` or the environment variable `key_env`)
  std::vector<std::string> models;  // allowed pool names or aliases; empty = all
  int rate_per_minute = 0;          // 0 = unlimited
};

struct queue_config {
  int max = 64;            // waiting requests per pool beyond which new ones get 429 at once
  int timeout_ms = 30000;  // longest wait for a slot; past it 429 (503 when no replica is healthy)
};

struct limits_config {
  std::uint64_t max_body_bytes = 8u << 20;  // 413 beyond
  std::uint32_t max_header_bytes = 16384;   // 431 beyond
  int header_timeout_ms = 10000;            // a request's header must arrive within this (slow clients)
  int idle_timeout_ms = 60000;              // keep-alive client connections idle longer are closed
  int first_byte_timeout_ms = 60000;        // backend must produce its first body byte within this
  int connect_timeout_ms = 3000;            // a backend (on another machine: its link may be down) must
                                            // accept the connection within this, else failover
  int stream_idle_timeout_ms = 120000;      // longest silence of a backend mid-response
  int max_connections = 4096;               // client connections; beyond: 503 and close
  int retries = 2;                          // extra attempts on other replicas before the first byte
  int retry_backoff_ms = 20;                // base of the jittered exponential backoff
  int eject_after_failures = 2;             // consecutive failures that eject a replica (passive)
  int health_interval_ms = 1000;            // active /health probes of ejected replicas
  int drain_timeout_ms = 10000;             // stop(): wait this long for in-flight requests
};

// A backend's memory on one device, predicted by the plan and measured from llama-server's buffers at
// load (docs/dashboard.md); either may be missing. Shown in /metrics (config::memory_rows).
struct memory_buffers {
  std::uint64_t model_bytes = 0, kv_bytes = 0, compute_bytes = 0;
  std::uint64_t total() const { return model_bytes + kv_bytes + compute_bytes; }
};
struct memory_row {
  std::string backend, model, node, device;
  std::optional<memory_buffers> predicted, measured;
};

struct config {
  std::string listen_host = "127.0.0.1";
  int listen_port = 8080;                // 0 = any free port (see server::port())
  int threads = 0;                       // 0 = std::thread::hardware_concurrency()
  std::vector<api_key_config> api_keys;  // empty = no auth; then only loopback listen addresses are allowed
  std::string session_header = "x-session-id";  // sticky sessions: same value -> same replica
  limits_config limits;
  queue_config queue;
  std::string usage_db;  // SQLite file for per-key usage; empty = in memory only
  std::vector<pool_config> pools;
  // Called (on a worker thread, never under a lock; must not block) when a request queues for an
  // on-demand pool that has no ready replica. Empty: nobody loads models; such requests time out.
  std::function<void(const std::string& pool)> on_demand_wanted;
  // The dashboard's GET /agifarm/status (the JSON of `agifarm status --json`); empty: {"running":false}.
  // Called on a worker thread: must answer from memory.
  std::function<std::string()> status_json;
  // GET /metrics: the backends' memory per device, predicted and measured (render_memory); empty: none.
  // Called on a worker thread: must answer from memory.
  std::function<std::vector<memory_row>()> memory_rows;
};

// Counters a supervisor or a test can read without scraping /metrics.
struct replica_snapshot {
  std::string name;
  bool ready = true;    // as set by set_replica_ready
  bool healthy = true;  // not ejected by outlier detection
  int outstanding = 0;
  std::chrono::steady_clock::time_point last_used{};  // last lease granted or ended
};
struct pool_snapshot {
  std::string name;
  std::size_t queued = 0;
  std::chrono::steady_clock::time_point oldest_wait{};  // when its oldest queued request arrived
};
// A model's on-demand life as the farm runner reports it (shown in /metrics).
struct model_status {
  std::string name;
  std::string state;  // loaded | loading | unloaded | evicted | stopping
  bool on_demand = false;
  std::uint64_t loads = 0, evictions = 0, unloads = 0;  // unloads: stopped after ttl idle
  double last_load_s = 0, total_load_s = 0;
};
struct snapshot {
  std::vector<replica_snapshot> replicas;
  std::vector<pool_snapshot> pools;
  std::uint64_t requests = 0;  // finished client requests (any status)
  std::uint64_t open_connections = 0;
};

// Checks what cannot be checked per field: unique names, aliases not clashing with pool names,
// replicas present, no keys => loopback listen address. Errors name the pool/replica/key.
status validate(const config& c);

class server {
 public:
  explicit server(config c);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Validates, opens the usage store, binds config.listen_host:listen_port and starts the workers.
  // Errors name the address or file.
  status start();
  // The bound port (useful with listen_port 0); 0 before start().
  int port() const;
  // Takes a replica (by replica_config::name) out of rotation (false) or puts it back (true). A replica
  // put back is healthy at once (the caller has checked it). Unknown names return an error.
  status set_replica_ready(const std::string& replica_name, bool ready);
  // Points a replica at a new "http://host:port" (a backend restarted on another port); requests
  // from then on go there and pooled connections to the old address are dropped. Errors name the
  // replica or the URL.
  status set_replica_url(const std::string& replica_name, const std::string& url);
  snapshot stats() const;
  // On demand: takes the named replicas out of rotation only if none has a request in flight and no
  // pool listing them has one queued (atomically: no request can slip in between). True if retired.
  bool retire_if_idle(const std::vector<std::string>& replica_names);
  // Answers every request queued in the named pools with 503 and `message` (a model that cannot load).
  void refuse_queued(const std::vector<std::string>& pool_names, const std::string& message);
  // The models' on-demand state for /metrics (replaces the previous report).
  void set_model_status(std::vector<model_status> models);
  // Stops accepting, lets in-flight requests finish for up to `drain`, then cancels the rest and joins.
  void stop(std::chrono::milliseconds drain);
  void stop();  // drain = config.limits.drain_timeout_ms

  struct impl;  // the running state; internal to src/gateway (server_impl.hpp)

 private:
  friend void inject_upstream_failures(server& s, std::shared_ptr<fail_count> f);  // gateway/testing.hpp
  std::unique_ptr<impl> impl_;
};

}  // namespace agifarm::gateway
