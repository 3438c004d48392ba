// The gateway server: Boost.Beast + Asio with C++20 coroutines. One io_context per worker thread, each
// with its own SO_REUSEPORT acceptor and its own keep-alive connection pools to the backends; the
// shared state (scheduler, keys, metrics, usage) is thread-safe. See gateway.hpp for the contract,
// docs/gateway.md for the behaviour and server_impl.hpp for the parts and where each lives. This file:
// the lifecycle, client sessions, the accept loop, the sweeper, background probes.
//
// Cost per request matters here (the goal is nginx's requests/s on the same cores), hence:
// - the io_context's concrete executor type everywhere, not any_io_executor (wire.hpp);
// - deadlines as a time stamp per socket that the worker's sweeper checks (timed_socket.hpp);
// - the client watch (noticing a client that leaves while its request waits) armed by the same
//   sweeper, only for requests that have lasted, not by a timer per request;
// - work that can finish at once is done at once, without an asynchronous operation (each costs a
//   trip through the scheduler): a request already in the read buffer is parsed in place, a write
//   goes straight to the (non-blocking) socket and only what the socket does not take waits;
// - no recv() that is known to fail: after a read drained a socket, the next read waits for epoll
//   instead of trying first (read_readiness.hpp; Asio alone tries, and fails with EAGAIN, on almost
//   every read of a request/response connection);
// - few coroutines per request (each is a frame and a resumption): session, proxy, open_response,
//   relay; the rest are plain functions, or coroutines only on rare paths (connect, retries, errors).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>

#include "gateway/config.hpp"
#include "gateway/server_impl.hpp"
#include "gateway/testing.hpp"

namespace agifarm::gateway {

server::impl::impl(config c)
    : cfg(std::move(c)), rt(cfg), sched(cfg), keys(cfg.api_keys), met(pool_names(cfg), replica_names()) {}

std::string server::impl::replica_key(const std::string& name) const {
  for (const auto& p : cfg.pools)
    for (const auto& r : p.replicas)
      if (r.name == name && !r.api_key.empty()) return r.api_key;
  return {};
}

std::vector<std::string> server::impl::pool_names(const config& c) {
  std::vector<std::string> out;
  for (const auto& p : c.pools) out.push_back(p.name);
  return out;
}

std::vector<std::string> server::impl::replica_names() const {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < sched.replica_count(); ++i) out.push_back(sched.replica_name(i));
  return out;
}

// ---- client connections ------------------------------------------------------------------------------

// A request that could not be read: 413 / 431 / 400 where the client should hear why; timeouts, resets
// and EOF just close.
awaitable<void> server::impl::reject_unreadable(timed_socket& stream, boost::system::error_code hec) {
  if (hec == http::error::body_limit) {
    met.request_done(k_no_index, k_no_index, 413, 0);
    co_await send_error(
        stream, 413,
        fmt::format("The request body exceeds max_body_bytes ({} bytes).", cfg.limits.max_body_bytes),
        "request_too_large", false);
  } else if (hec == http::error::header_limit) {
    met.request_done(k_no_index, k_no_index, 431, 0);
    co_await send_error(stream, 431,
                        fmt::format("The request header exceeds {} bytes.", cfg.limits.max_header_bytes),
                        "header_too_large", false);
  } else if (hec.category() == make_error_code(http::error::bad_target).category() &&
             hec != http::error::end_of_stream && hec != http::error::partial_message) {
    met.request_done(k_no_index, k_no_index, 400, 0);
    co_await send_error(stream, 400, "Malformed HTTP request: " + hec.message(), "malformed_http", false);
  }
}

awaitable<void> server::impl::session(worker& w, socket_type sock) {
  struct conn_count {
    impl* self;
    ~conn_count() { self->open_connections--; }
  } counted{this};
  timed_socket stream(std::move(sock));
  w.timed.push_back(stream);
  stream.sock.set_option(tcp::no_delay(true));
  stream.sock.non_blocking(true);
  readiness::watch_hangup(stream.sock);
  beast::flat_buffer buffer;
  buffer.reserve(8192);
  const auto header_timeout = std::chrono::milliseconds(cfg.limits.header_timeout_ms);
  const auto idle_timeout = std::chrono::milliseconds(cfg.limits.idle_timeout_ms);
  bool first = true;
  for (;;) {
    if (stopping) break;
    if (!first && buffer.size() == 0) {
      // Keep-alive: wait for the next request's first bytes (idle timeout), closable on stop.
      stream.idle_client = true;
      stream.expires_after(idle_timeout);
      auto b = buffer.prepare(4096);
      boost::system::error_code ec;
      std::size_t n = 0;
      if (!readiness::read_now(stream.sock, b, ec, n)) {
        auto [rec, rn] = co_await stream.sock.async_read_some(b, k_tuple);
        ec = rec;
        n = rn;
        readiness::after_wait(stream.sock, ec, n, b.size());
      }
      stream.idle_client = false;
      stream.settle(ec);
      if (ec) break;
      buffer.commit(n);
    }
    first = false;
    http::request_parser<client_body, field_allocator> parser;
    parser.header_limit(cfg.limits.max_header_bytes);
    parser.body_limit(cfg.limits.max_body_bytes);
    parser.eager(true);  // put() goes on into the body
    boost::system::error_code hec;
    parse_buffered(parser, buffer, hec);  // a keep-alive read usually brought the whole request
    if (!hec && !parser.is_header_done()) {
      stream.expires_after(header_timeout);
      auto [ec2, hn] = co_await http::async_read_header(stream.sock, buffer, parser, k_tuple);
      (void)hn;
      stream.settle(ec2);
      hec = ec2;
    }
    auto started = clock_type::now();
    if (!hec && !parser.is_done()) {
      // The body: its own deadline (a slow uploader is held to the idle timeout).
      stream.expires_after(idle_timeout);
      auto [bec, bn] = co_await http::async_read(stream.sock, buffer, parser, k_tuple);
      (void)bn;
      stream.settle(bec);
      hec = bec;
    }
    if (hec) {
      co_await reject_unreadable(stream, hec);
      break;
    }
    auto& req = parser.get();
    bool keep = false;
    if (auto kind = proxied_endpoint(req))
      keep = co_await proxy(w, stream, req, *kind, started);
    else
      keep = co_await handle(stream, req);
    requests_done++;
    if (!keep) break;
  }
  beast::error_code ignored;
  stream.sock.shutdown(tcp::socket::shutdown_send, ignored);
  stream.sock.close(ignored);
}

awaitable<void> server::impl::accept_loop(worker& w) {
  for (;;) {
    auto [ec, sock] = co_await w.acceptor.async_accept(k_tuple);
    if (ec) {
      if (ec == net::error::operation_aborted || stopping) co_return;
      if (ec == net::error::no_descriptors) {
        // Out of fds: back off briefly instead of spinning.
        timer_type t(w.ioc.get_executor(), std::chrono::milliseconds(50));
        co_await t.async_wait(k_tuple);
      }
      continue;
    }
    if (stopping) co_return;
    if (open_connections.load() >= static_cast<std::uint64_t>(cfg.limits.max_connections)) {
      // Over max_connections: a short 503, best effort without blocking, then close.
      std::string body =
          openai_error_body("The gateway is at max_connections.", "server_error", "overloaded");
      std::string msg =
          response_head(503, "application/json", body.size(), false, "Retry-After: 1\r\n") + body;
      ::send(sock.native_handle(), msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      beast::error_code ignored;
      sock.close(ignored);
      met.request_done(k_no_index, k_no_index, 503, 0);
      continue;
    }
    open_connections++;
    net::co_spawn(w.ioc, session(w, std::move(sock)), net::detached);
  }
}

// ---- deadlines and the client watch --------------------------------------------------------------------

// Watches the client socket of a request that has lasted k_watch_delay (armed by the sweeper): EOF or
// error means the client went away, and the upstream is closed at once. Requests that finish sooner
// (most, through a fast backend) cost nothing. Mid-stream, a client that left is also noticed at once
// by the next failed write.
constexpr auto k_watch_delay = std::chrono::milliseconds(100);

void server::impl::arm_watch(const std::shared_ptr<request_state>& st) {
  st->watching = true;
  st->client.sock.async_wait(
      tcp::socket::wait_read,
      net::bind_cancellation_slot(st->watch_cancel.slot(), [st](boost::system::error_code ec) {
        if (ec || st->done) return;
        char byte;
        ssize_t n = ::recv(st->client.sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
          return;  // pipelined data: not gone
        st->client_gone = true;
        if (st->upstream) {
          beast::error_code ignored;
          st->upstream->stream.sock.close(ignored);
        }
        if (st->waiting) st->cancel_wait();
      }));
}

// How often the sweeper looks: an eighth of the shortest timeout, between 10 and 250 ms (so a
// timeout fires at most an eighth late, and the client watch starts 100-350 ms into a request).
clock_type::duration server::impl::sweep_interval() const {
  const auto& l = cfg.limits;
  int shortest = std::min({l.header_timeout_ms, l.idle_timeout_ms, l.first_byte_timeout_ms,
                           l.connect_timeout_ms, l.stream_idle_timeout_ms});
  return std::chrono::milliseconds(std::clamp(shortest / 8, 10, 250));
}

// Enforces the deadlines of this worker's sockets and arms the client watch of lasting requests.
awaitable<void> server::impl::sweeper(worker& w) {
  timer_type t(w.ioc.get_executor());
  const auto tick = sweep_interval();
  for (;;) {
    t.expires_after(tick);
    auto [ec] = co_await t.async_wait(k_tuple);
    if (ec) co_return;
    const auto now = clock_type::now();
    expire_deadlines(w.timed, now);
    for (auto& r : w.in_flight)
      if (!r.watching && !r.done && now - r.started >= k_watch_delay) arm_watch(r.shared_from_this());
  }
}

// ---- background: active health checks of ejected replicas, usage persistence ------------------------

awaitable<bool> server::impl::probe(worker& w, std::size_t replica) {
  timed_socket s(w.ioc.get_executor());
  w.timed.push_back(s);
  // One deadline for the whole probe.
  s.expires_after(std::chrono::milliseconds(std::min(cfg.limits.health_interval_ms, 5000)));
  auto [ec] = co_await s.sock.async_connect(w.backends[replica].endpoint, k_tuple);
  if (ec) co_return false;
  http::request<http::empty_body> req{http::verb::get, "/health", 11};
  req.set(http::field::host, w.backends[replica].host_header);
  req.keep_alive(false);
  auto [wec, wn] = co_await http::async_write(s.sock, req, k_tuple);
  (void)wn;
  if (wec) co_return false;
  beast::flat_buffer b;
  http::response<http::string_body> res;
  auto [rec, rn] = co_await http::async_read(s.sock, b, res, k_tuple);
  (void)rn;
  co_return !rec && res.result_int() == 200;
}

awaitable<void> server::impl::background(worker& w) {
  timer_type t(w.ioc.get_executor());
  auto interval = std::chrono::milliseconds(cfg.limits.health_interval_ms);
  auto last_flush = clock_type::now();
  while (!stopping) {
    t.expires_after(std::min<clock_type::duration>(interval, std::chrono::milliseconds(1000)));
    auto [ec] = co_await t.async_wait(k_tuple);
    if (ec || stopping) break;
    for (auto r : sched.ejected()) {
      bool ok = co_await probe(w, r);
      sched.probe_result(r, ok, clock_type::now());
      if (ok)
        spdlog::info("gateway: replica {} passed /health and is back in rotation", sched.replica_name(r));
    }
    if (clock_type::now() - last_flush >= std::chrono::seconds(1)) {
      last_flush = clock_type::now();
      if (auto s = usage.flush(); !s) spdlog::error("gateway: {}", s.err().message);
    }
  }
}

// ---- the public API ------------------------------------------------------------------------------------

server::server(config c) : impl_(std::make_unique<impl>(std::move(c))) {}

server::~server() {
  if (impl_->running) stop();
}

int server::port() const { return impl_->bound_port.load(); }

status server::set_replica_ready(const std::string& name, bool ready) {
  if (!impl_->sched.set_ready(name, ready, clock_type::now()))
    return make_error(fmt::format("set_replica_ready: no replica named '{}'", name));
  return {};
}

status server::set_replica_url(const std::string& name, const std::string& url) {
  auto& m = *impl_;
  std::optional<std::size_t> idx;
  for (std::size_t r = 0; r < m.sched.replica_count(); ++r)
    if (m.sched.replica_name(r) == name) idx = r;
  if (!idx) return make_error(fmt::format("set_replica_url: no replica named '{}'", name));
  auto a = resolve_backend(name, url, m.replica_key(name));
  if (!a) return make_error(a.err().message);
  for (auto& w : m.workers) {
    worker* wp = w.get();
    // Pooled connections go to the old address: drop them with it.
    net::post(wp->ioc, [wp, r = *idx, addr = *a] {
      wp->backends[r] = addr;
      wp->upstream.clear(r);
    });
  }
  m.sched.set_replica_url(*idx, url);  // what a later start() uses
  return {};
}

bool server::retire_if_idle(const std::vector<std::string>& names) {
  std::vector<std::size_t> idx;
  for (const auto& n : names)
    if (auto r = impl_->sched.find_replica(n)) idx.push_back(*r);
  return impl_->sched.retire_if_idle(idx);
}

void server::refuse_queued(const std::vector<std::string>& pool_names, const std::string& message) {
  auto& sched = impl_->sched;
  for (std::size_t p = 0; p < sched.pool_count(); ++p)
    if (std::find(pool_names.begin(), pool_names.end(), sched.pool_name(p)) != pool_names.end())
      sched.refuse_waiters(p, message);
}

void server::set_model_status(std::vector<model_status> models) {
  std::lock_guard lk(impl_->models_mu);
  impl_->models = std::move(models);
}

snapshot server::stats() const {
  snapshot s;
  for (const auto& r : impl_->sched.replica_states())
    s.replicas.push_back({r.name, r.ready, !r.ejected, r.outstanding, r.last_used});
  for (const auto& p : impl_->sched.pool_states()) s.pools.push_back({p.name, p.queued, p.oldest_wait});
  s.requests = impl_->requests_done.load();
  s.open_connections = impl_->open_connections.load();
  return s;
}

status server::start() {
  auto& m = *impl_;
  if (m.running) return make_error("gateway: already started");
  if (auto v = validate(m.cfg); !v) return v;
  m.backends.clear();
  for (std::size_t r = 0; r < m.sched.replica_count(); ++r) {
    auto a = resolve_backend(m.sched.replica_name(r), m.sched.replica_url(r),
                             m.replica_key(m.sched.replica_name(r)));
    if (!a) return make_error(a.err().message);
    m.backends.push_back(*a);
  }
  if (auto s = m.usage.open(m.cfg.usage_db); !s) return s;

  boost::system::error_code ec;
  std::string lhost = m.cfg.listen_host == "localhost" ? "127.0.0.1" : m.cfg.listen_host;
  auto addr = net::ip::make_address(lhost, ec);
  if (ec) return make_error(fmt::format("listen {}: not a numeric IP address", m.cfg.listen_host));
  unsigned threads = m.cfg.threads > 0 ? static_cast<unsigned>(m.cfg.threads)
                                       : std::max(1u, std::thread::hardware_concurrency());
  m.workers.clear();
  int port = m.cfg.listen_port;
  for (unsigned i = 0; i < threads; ++i) {
    auto w = std::make_unique<worker>(m.backends, 0x9e3779b9u * (i + 1));
    tcp::endpoint ep(addr, static_cast<unsigned short>(port));
    w->acceptor.open(ep.protocol(), ec);
    if (!ec) w->acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) {
      using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
      w->acceptor.set_option(reuse_port(true), ec);
    }
    if (!ec) w->acceptor.bind(ep, ec);
    if (!ec) w->acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      m.workers.clear();
      return make_error(fmt::format("listen {}:{}: {}", m.cfg.listen_host, port, ec.message()));
    }
    if (port == 0) port = w->acceptor.local_endpoint().port();
    m.workers.push_back(std::move(w));
  }
  m.bound_port = port;
  m.stopping = false;
  for (auto& w : m.workers) {
    net::co_spawn(w->ioc, m.accept_loop(*w), net::detached);
    net::co_spawn(w->ioc, m.sweeper(*w), net::detached);
  }
  net::co_spawn(m.workers[0]->ioc, m.background(*m.workers[0]), net::detached);
  for (auto& w : m.workers) {
    worker* wp = w.get();
    w->thread = std::thread([wp] {
      for (;;) {
        try {
          wp->ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("gateway: worker: {}", e.what());  // a bug; keep serving
        }
      }
    });
  }
  m.running = true;
  if (m.keys.enabled())
    spdlog::info("gateway: listening on {}:{} ({} threads, {} API keys)", m.cfg.listen_host, port, threads,
                 m.cfg.api_keys.size());
  else
    spdlog::info(
        "gateway: listening on {}:{} ({} threads); no api_keys configured, so bound to loopback only",
        m.cfg.listen_host, port, threads);
  return {};
}

void inject_upstream_failures(server& s, std::shared_ptr<fail_count> f) { s.impl_->faults = std::move(f); }

void server::stop() { stop(std::chrono::milliseconds(impl_->cfg.limits.drain_timeout_ms)); }

void server::stop(std::chrono::milliseconds drain) {
  auto& m = *impl_;
  if (!m.running) return;
  m.stopping = true;
  // Stop accepting and close keep-alive connections that are between requests.
  for (auto& w : m.workers) {
    worker* wp = w.get();
    net::post(wp->ioc, [wp] {
      beast::error_code ignored;
      wp->acceptor.close(ignored);
      for (auto& s : wp->timed)
        if (s.idle_client) s.sock.cancel(ignored);
    });
  }
  auto deadline = clock_type::now() + drain;
  while (m.open_connections.load() > 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (auto& w : m.workers) w->ioc.stop();
  for (auto& w : m.workers)
    if (w->thread.joinable()) w->thread.join();
  m.workers.clear();  // destroys pending coroutines: their sockets close
  if (auto s = m.usage.flush(); !s) spdlog::error("gateway: {}", s.err().message);
  m.running = false;
  m.bound_port = 0;
}

}  // namespace agifarm::gateway
