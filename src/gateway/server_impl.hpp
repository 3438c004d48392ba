// server_impl: the state of a running gateway::server (server::impl) and the per-worker and
// per-request types its parts share. Internal to src/gateway. The parts, one file each:
//   server.cpp    lifecycle (start/stop, the public API), client sessions, accept loop, sweeper,
//                 background health probes and usage flushes
//   endpoints.cpp the route table (every path the gateway answers) and the pages it answers itself
//   proxy.cpp     a model request: admission, a slot from the scheduler, retries, accounting
//   attempt.cpp   one attempt on one replica up to the response header (connect, send, read)
//   relay.cpp     the response: first bytes, commit, relay to the client, mid-stream failure
//   upstream.*    backend addresses, connections and the idle pool; wire.* and timed_socket.hpp
//                 the HTTP helpers and deadlines they all use.
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "gateway/gateway.hpp"
#include "gateway/keys.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request.hpp"
#include "gateway/router.hpp"
#include "gateway/scheduler.hpp"
#include "gateway/upstream.hpp"
#include "gateway/usage.hpp"

namespace agifarm::gateway {

// Statuses that only metrics see (the client saw the response's own status, or nothing).
constexpr int k_metrics_client_gone = 499;  // the client went away before its response ended
constexpr int k_metrics_cut_stream = 599;   // the backend failed after the response was committed

// Shared between a request coroutine and the client watcher / queue grant callback. All on one strand
// (the worker's single-threaded io_context), except grant callbacks, which post here. Linked into the
// worker's in-flight list, where the sweeper arms the client watch of requests that have lasted.
struct request_state : auto_unlink_hook, std::enable_shared_from_this<request_state> {
  request_state(const executor_type& e, timed_socket& c, clock_type::time_point t)
      : ex(e), client(c), started(t) {}
  // The timer for queue waits and retry backoff, made on first use: most requests need neither, and
  // making and destroying a timer takes the timer service's lock twice.
  timer_type& wait_timer() {
    if (!timer) timer.emplace(ex);
    return *timer;
  }
  void cancel_wait() {
    if (timer) timer->cancel();
  }
  executor_type ex;
  std::optional<timer_type> timer;
  timed_socket& client;
  clock_type::time_point started;
  bool watching = false;
  net::cancellation_signal watch_cancel;
  bool client_gone = false;
  bool done = false;
  upstream_conn* upstream = nullptr;  // closed when the client goes away
  std::optional<grant> granted;
  bool waiting = false;
};
using request_list = boost::intrusive::list<request_state, boost::intrusive::constant_time_size<false>>;

struct worker {
  worker(std::vector<backend_addr> b, unsigned seed)
      : acceptor(ioc.get_executor()), backends(std::move(b)), upstream(backends.size()), rng(seed) {}
  // One thread runs it and does all its socket I/O (other threads only post), so the reactor needs no
  // locks.
  net::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  acceptor_type acceptor;
  std::thread thread;
  // Each worker's own copy of the backend addresses, changed only on its own thread (set_replica_url
  // posts the change), so the request path reads it without a lock.
  std::vector<backend_addr> backends;
  upstream_pool upstream;
  std::minstd_rand rng;
  timed_list timed;        // every open socket of this worker, for the sweeper and stop()
  request_list in_flight;  // requests being handled, for the client watch
};

// How one attempt on one replica ended.
enum class attempt_outcome : std::uint8_t {
  responded,         // open_response: the backend's response header is in (relay() goes on)
  completed,         // committed, and relayed to its end
  cut_mid_response,  // committed, then the backend failed (never replayed)
  retryable,         // failed before the first body byte: another replica may be tried
  client_gone,       // the client went away
};
// Why an attempt failed (retryable or cut); a timeout before the first byte makes the reply a 504.
enum class failure_kind : std::uint8_t {
  none,
  connect,             // the backend did not accept the connection
  header_timeout,      // no response header within first_byte_timeout_ms
  first_byte_timeout,  // no first body byte within first_byte_timeout_ms
  backend_error,       // the connection failed (reset, EOF, malformed HTTP)
  backend_5xx,         // the backend answered 5xx and another replica could be tried
  stream_silent,       // the backend went silent mid-response
};
constexpr bool is_gateway_timeout(failure_kind k) {
  return k == failure_kind::header_timeout || k == failure_kind::first_byte_timeout;
}
struct attempt_result {
  attempt_outcome outcome = attempt_outcome::retryable;
  failure_kind failure = failure_kind::none;
  bool keep_alive = false;  // completed / cut: can the client connection be kept
  std::string why = {};     // retryable / cut: for the log and the client's error
};

// Why the scheduler gave a request no slot.
enum class refusal : std::uint8_t {
  none,
  queue_full,      // 429: every replica busy and the queue full, or the wait too long
  no_healthy,      // 503: no replica healthy (or an on-demand model not ready in time)
  loader_refused,  // 503: the on-demand loader cannot load the model
  exhausted,       // every replica has been tried: the last failure decides
};

// One model request as proxy() drives it through attempts: what it needs and what it gathers.
struct proxy_call {
  worker& w;
  timed_socket& client;
  const client_request& req;
  std::shared_ptr<request_state> st;
  std::size_t pool = 0;
  bool keep = false;  // the client asked for keep-alive (and the server is not stopping)
  clock_type::time_point started;
  std::vector<std::size_t> excluded = {};  // replicas already tried
  double ttfb_s = -1;
  token_usage usage{};
  bool usage_found = false;
  int status = 0;  // the status the client got (once committed)
};

// A reply the gateway makes itself instead of proxying.
struct error_reply {
  int status = 0;
  std::string message;
  const char* code = "";
  std::string extra;  // more header lines
};

// What a page handler of the route table returns.
struct page {
  int status = 200;
  std::string_view content_type = "application/json";
  std::string body;
};

// endpoints.cpp: the request target without its query string; the model endpoint a request is a POST
// to (session() sends those to proxy()).
std::string_view path_of(const client_request& req);
std::optional<endpoint> proxied_endpoint(const client_request& req);

struct server::impl {
  explicit impl(config c);

  // The key a replica's backend wants (the same replica may be listed in several pools).
  std::string replica_key(const std::string& name) const;
  static std::vector<std::string> pool_names(const config& c);
  std::vector<std::string> replica_names() const;

  config cfg;
  router rt;
  scheduler sched;
  key_store keys;
  metrics met;
  usage_store usage;
  std::shared_ptr<fail_count> faults;  // tests only (gateway/testing.hpp)
  std::vector<backend_addr> backends;
  std::vector<std::unique_ptr<worker>> workers;
  std::atomic<int> bound_port{0};
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> requests_done{0};
  std::atomic<bool> stopping{false};
  bool running = false;
  mutable std::mutex models_mu;
  std::vector<model_status> models;  // on-demand states, as the runner last reported them

  // ---- server.cpp: connections, deadlines, background -------------------------------------------
  awaitable<void> session(worker& w, socket_type sock);
  awaitable<void> reject_unreadable(timed_socket& stream, boost::system::error_code ec);
  awaitable<void> accept_loop(worker& w);
  awaitable<void> sweeper(worker& w);
  clock_type::duration sweep_interval() const;
  static void arm_watch(const std::shared_ptr<request_state>& st);
  awaitable<bool> probe(worker& w, std::size_t replica);
  awaitable<void> background(worker& w);

  // ---- endpoints.cpp: the route table and the gateway's own pages --------------------------------
  awaitable<bool> send(timed_socket& s, int status, std::string_view content_type, std::string_view body,
                       bool keep_alive, std::string_view extra = {});
  awaitable<bool> send_error(timed_socket& s, int status, std::string_view message, std::string_view code,
                             bool keep_alive, std::string_view extra = {});
  awaitable<bool> handle(timed_socket& client, client_request& req);
  std::optional<std::size_t> presented_key(const client_request& req) const;
  page health_page(std::optional<std::size_t> key) const;
  page metrics_page(std::optional<std::size_t> key) const;
  page models_page(std::optional<std::size_t> key) const;
  page usage_page(std::optional<std::size_t> key) const;

  // ---- proxy.cpp: one model request ---------------------------------------------------------------
  struct admitted {
    std::optional<std::size_t> key;
    request_info info;
    std::size_t pool = 0;
  };
  awaitable<bool> proxy(worker& w, timed_socket& client, client_request& req, endpoint kind,
                        clock_type::time_point started);
  std::optional<error_reply> admit(const client_request& req, endpoint kind, admitted& a);
  pick_request pick_for(const client_request& req, const admitted& a) const;
  std::chrono::milliseconds queue_wait(std::size_t pool) const;
  std::string refusal_message(std::size_t pool, refusal why) const;
  void acquire_slot(std::size_t pool, const pick_request& pick, const std::vector<std::size_t>& excluded,
                    clock_type::time_point deadline, const std::shared_ptr<request_state>& st,
                    std::optional<lease>& l, refusal& why, std::optional<std::uint64_t>& ticket);
  awaitable<std::optional<grant>> wait_grant(std::shared_ptr<request_state> st, std::uint64_t ticket,
                                             clock_type::time_point deadline);
  awaitable<void> backoff(proxy_call& c, int attempt);
  void settle_attempt(proxy_call& c, const lease& l, const attempt_result& r, int attempt, int attempts);
  std::optional<error_reply> finish(proxy_call& c, const std::optional<std::size_t>& key, bool committed,
                                    failure_kind last_kind, std::string last_failure, std::size_t replica,
                                    int final_status);

  // ---- attempt.cpp: up to the response header ------------------------------------------------------
  std::unique_ptr<upstream_conn> take_idle(worker& w, std::size_t replica);
  void put_idle(worker& w, std::size_t replica, std::unique_ptr<upstream_conn> c);
  awaitable<attempt_result> open_response(proxy_call& c, const lease& l,
                                          std::unique_ptr<upstream_conn>& conn);
  awaitable<boost::system::error_code> connect(proxy_call& c, upstream_conn& conn, const backend_addr& b);

  // ---- relay.cpp: the response -----------------------------------------------------------------------
  awaitable<attempt_result> relay(proxy_call& c, const lease& l, bool last_by_count,
                                  std::unique_ptr<upstream_conn>& conn);
  awaitable<attempt_result> end_cut_response(proxy_call& c, const lease& l, upstream_conn& conn,
                                             boost::system::error_code ec, response_shape shape,
                                             bool keep_alive);
  bool is_last_attempt(proxy_call& c, const lease& l, bool last_by_count);
  attempt_result client_left(proxy_call& c, upstream_conn& conn);
};

}  // namespace agifarm::gateway
