// The gateway server: Boost.Beast + Asio with C++20 coroutines. One io_context per worker thread, each
// with its own SO_REUSEPORT acceptor and its own keep-alive connection pools to the backends; the
// shared state (scheduler, keys, metrics, usage) is thread-safe. See gateway.hpp for the contract and
// docs/gateway.md for the behaviour.
//
// Cost per request matters here (the goal is nginx's requests/s on the same cores), hence:
// - the io_context's concrete executor type everywhere, not any_io_executor (no type-erased executor
//   copies per operation);
// - deadlines as a time stamp per socket that the worker's sweeper checks a few times per second
//   (timed_socket), not beast::tcp_stream's timer per operation, which costs a timer-queue insert, a
//   cancel and one more handler run for every read and write;
// - the client watch (noticing a client that leaves while its request waits) armed by the same
//   sweeper, only for requests that have lasted, not by a timer per request;
// - work that can finish at once is done at once, without an asynchronous operation (each costs a
//   trip through the scheduler): a request already in the read buffer is parsed in place, a write
//   goes straight to the (non-blocking) socket and only what the socket does not take waits;
// - no recv() that is known to fail: after a read drained a socket, the next read waits for epoll
//   instead of trying first (read_readiness.hpp; Asio alone tries, and fails with EAGAIN, on almost
//   every read of a request/response connection).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <list>
#include <random>
#include <tuple>
#include <thread>

#include "gateway/config.hpp"
#include "gateway/gateway.hpp"
#include "gateway/keys.hpp"
#include "gateway/metrics.hpp"
#include "gateway/read_readiness.hpp"
#include "gateway/recycling_allocator.hpp"
#include "gateway/request.hpp"
#include "gateway/router.hpp"
#include "gateway/scheduler.hpp"
#include "gateway/usage.hpp"

namespace agifarm::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using namespace std::string_view_literals;  // appends of literals without a strlen() each
using clock_type = std::chrono::steady_clock;
using executor_type = net::io_context::executor_type;
using socket_type = net::basic_stream_socket<tcp, executor_type>;
using acceptor_type = net::basic_socket_acceptor<tcp, executor_type>;
using timer_type = net::basic_waitable_timer<clock_type, net::wait_traits<clock_type>, executor_type>;
template <class T>
using awaitable = net::awaitable<T, executor_type>;
// Requests (header fields and body) and backend responses (header fields) live in recycled blocks
// (recycling_allocator.hpp).
using field_allocator = agifarm::gateway::recycling_allocator<char>;
using client_body = http::basic_string_body<char, std::char_traits<char>, field_allocator>;
using client_request = http::request<client_body, http::basic_fields<field_allocator>>;
constexpr auto k_tuple = net::as_tuple(net::use_awaitable_t<executor_type>{});
using auto_unlink_hook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

namespace {

constexpr std::size_t k_relay_buffer = 16384;
constexpr std::size_t k_max_idle_per_replica = 256;

std::string_view reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return http::obsolete_reason(static_cast<http::status>(status));
  }
}

std::string error_type_for(int status) {
  switch (status) {
    case 400: case 413: case 431: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

// A socket with a deadline for its pending operations. The worker's sweeper cancels the socket's
// operations once `deadline` has passed (they then fail with operation_aborted, which settle() turns
// into beast::error::timeout). Arm before an operation, settle after it: an idle socket between
// operations has no deadline, so a pending client watch on it is never cancelled by a stale one.
struct timed_socket : auto_unlink_hook {
  explicit timed_socket(socket_type s) : sock(std::move(s)) {}
  explicit timed_socket(const executor_type& ex) : sock(ex) {}
  void expires_after(clock_type::duration d) {
    deadline = clock_type::now() + d;
    fired = false;
  }
  void disarm() {
    deadline = clock_type::time_point::max();
    fired = false;
  }
  // After an operation: disarm, and name a cancellation by the sweeper a timeout.
  void settle(boost::system::error_code& ec) {
    if (ec && fired) ec = beast::error::timeout;
    disarm();
  }
  socket_type sock;
  clock_type::time_point deadline = clock_type::time_point::max();
  bool fired = false;
  bool idle_client = false;  // a client connection waiting for its next request (closed on stop)
};
using timed_list = boost::intrusive::list<timed_socket, boost::intrusive::constant_time_size<false>>;

// (Error codes are tested for being set before being compared: error_code's operator== is an
// out-of-line call, and these run on every read and write of the relay.)
// Writes what the socket takes now (it is non-blocking) and returns how many bytes of `bufs` are left
// to write asynchronously; sets `ec` on an error other than would_block.
template <class Buffers>
std::size_t write_now(socket_type& sock, const Buffers& bufs, boost::system::error_code& ec) {
  std::size_t total = net::buffer_size(bufs);
  std::size_t n = sock.write_some(bufs, ec);
  if (ec && (ec == net::error::would_block || ec == net::error::try_again)) {
    ec = {};
    n = 0;
  }
  return ec ? 0 : total - n;
}

// Parses what is already buffered into `parser`. need_more is not an error here (the caller reads
// more); need_buffer (a buffer body is full) neither.
template <class Parser>
void parse_buffered(Parser& parser, beast::flat_buffer& buffer, boost::system::error_code& ec) {
  while (!ec && buffer.size() > 0 && !parser.is_done()) {
    std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec && (ec == http::error::need_more || ec == http::error::need_buffer)) {
      ec = {};
      break;
    }
    if (used == 0) break;
  }
}

// A header's value by a linear walk over the message's few fields: beast's operator[] looks the name
// up in its ordered set with case-insensitive string compares, several times dearer on a request's
// handful of headers (it showed in per-request instruction counts).
template <class Fields>
std::string_view header_value(const Fields& fields, http::field name) {
  for (const auto& f : fields)
    if (f.name() == name) return f.value();
  return {};
}
template <class Fields>
std::string_view header_value(const Fields& fields, std::string_view name) {
  for (const auto& f : fields)
    if (f.name_string().size() == name.size() && beast::iequals(f.name_string(), name)) return f.value();
  return {};
}

void append_chunk(std::string& out, std::string_view data) {
  char size[24];
  auto end = std::to_chars(size, size + sizeof size - 2, data.size(), 16).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(size, end);
  out.append(data);
  out += "\r\n"sv;
}

// One backend connection with its read buffer; lives in a worker's idle pool between requests.
struct upstream_conn {
  // Reads ask for up to k_read_size bytes: a burst of SSE events is one read.
  static constexpr std::size_t k_read_size = 65536;
  explicit upstream_conn(const executor_type& ex) : stream(ex), relay(new char[k_relay_buffer]) { buffer.reserve(k_read_size); }
  timed_socket stream;
  beast::flat_buffer buffer;
  // A read from the backend into `buffer`, in halves so that the await stays in the caller's coroutine
  // (a helper coroutine would cost a frame per read): read_now() settles it when it can (see
  // readiness::read_now); otherwise `co_await wait_read()` and pass its result through waited(). The
  // caller commits the bytes.
  net::mutable_buffer space;
  bool read_now(boost::system::error_code& ec, std::size_t& n) {
    space = buffer.prepare(beast::read_size(buffer, k_read_size));
    return readiness::read_now(stream.sock, space, ec, n);
  }
  auto wait_read() { return stream.sock.async_read_some(space, k_tuple); }
  std::tuple<boost::system::error_code, std::size_t> waited(std::tuple<boost::system::error_code, std::size_t> r) {
    readiness::after_wait(stream.sock, std::get<0>(r), std::get<1>(r), space.size());
    return r;
  }
  // Body bytes on their way to the client, and the texts built per request: they live with the pooled
  // connection and keep their capacity, so a warm connection's requests allocate none of them.
  std::unique_ptr<char[]> relay;
  std::string request_head;  // the request line and headers sent to the backend
  std::string out;           // bytes to write to the client this round
  std::string sse_tail;      // SSE: bytes after the last complete event
  usage_scanner scanner;
  // The response being read (kept here, not in attempt()'s coroutine frame).
  std::optional<http::response_parser<http::buffer_body, field_allocator>> parser;
  void begin_response() {
    parser.emplace();
    parser->body_limit(boost::none);
  }
  // How the body goes to the client (set when the response is committed).
  bool sse = false;
  bool chunked_out = false;  // HTTP/1.1 chunked framing towards the client
  void frame(std::string_view data) {
    if (data.empty()) return;
    if (chunked_out) append_chunk(out, data);
    else out.append(data);
  }
  // Body bytes from the backend: scanned for usage and framed into `out`. SSE is relayed in whole
  // events only, so a backend dying mid-event never leaves half an event before our error event;
  // llama-server writes one event per chunk, so this adds no delay in practice.
  void take(std::string_view data) {
    scanner.feed(data);
    if (!sse) {
      frame(data);
      return;
    }
    if (sse_tail.empty()) {
      auto end = data.rfind("\n\n");
      if (end == data.size() - 2) {
        frame(data);
        return;
      }
      if (end != std::string_view::npos) {
        frame(data.substr(0, end + 2));
        data.remove_prefix(end + 2);
      }
      sse_tail.assign(data);
    } else {
      sse_tail.append(data);
      auto end = sse_tail.rfind("\n\n");
      if (end != std::string::npos) {
        frame(std::string_view(sse_tail).substr(0, end + 2));
        sse_tail.erase(0, end + 2);
      } else if (sse_tail.size() > usage_scanner::k_max_line) {
        frame(sse_tail);  // no event boundary in a megabyte: not SSE as we know it, pass it on
        sse_tail.clear();
      }
    }
  }
  // The rest of a body that ended without a final blank line.
  void flush_tail() {
    frame(sse_tail);
    sse_tail.clear();
  }
  bool reused = false;
};

struct backend_addr {
  tcp::endpoint endpoint;
  std::string host_header;
  std::string auth_lines;  // "\r\nAuthorization: Bearer <key>" for a backend with a key, else ""
};

// Shared between a request coroutine and the client watcher / queue grant callback. All on one strand
// (the worker's single-threaded io_context), except grant callbacks, which post here. Linked into the
// worker's in-flight list, where the sweeper arms the client watch of requests that have lasted.
struct request_state : auto_unlink_hook, std::enable_shared_from_this<request_state> {
  request_state(const executor_type& e, timed_socket& c, clock_type::time_point t) : ex(e), client(c), started(t) {}
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

// "http://host:port" with a numeric host -> the endpoint and Host header; errors name the replica.
result<backend_addr> resolve_backend(const std::string& name, const std::string& url, const std::string& key) {
  auto hp = parse_http_url(url);
  if (!hp) return make_error(fmt::format("replica '{}': {}", name, hp.err().message));
  std::string host = hp->host == "localhost" ? "127.0.0.1" : hp->host;
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) return make_error(fmt::format("replica '{}': host '{}' is not a numeric IP address", name, hp->host));
  std::string host_header = addr.is_v6() ? fmt::format("[{}]:{}", host, hp->port) : fmt::format("{}:{}", host, hp->port);
  return backend_addr{tcp::endpoint(addr, static_cast<unsigned short>(hp->port)), host_header,
                      key.empty() ? std::string() : "\r\nAuthorization: Bearer " + key};
}

}  // namespace

using request_list = boost::intrusive::list<request_state, boost::intrusive::constant_time_size<false>>;

struct worker {
  worker(std::vector<backend_addr> b, unsigned seed)
      : acceptor(ioc.get_executor()), backends(std::move(b)), idle(backends.size()), rng(seed) {}
  // One thread runs it and does all its socket I/O (other threads only post), so the reactor needs no
  // locks.
  net::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  acceptor_type acceptor;
  std::thread thread;
  // Each worker's own copy of the backend addresses, changed only on its own thread (set_replica_url
  // posts the change), so the request path reads it without a lock.
  std::vector<backend_addr> backends;
  std::vector<std::vector<std::unique_ptr<upstream_conn>>> idle;  // per global replica
  std::minstd_rand rng;
  timed_list timed;                       // every open socket of this worker, for the sweeper and stop()
  request_list in_flight;                 // requests being handled, for the client watch
};

struct server::impl {
  explicit impl(config c)
      : cfg(std::move(c)),
        rt(cfg),
        sched(cfg),
        keys(cfg.api_keys),
        met(pool_names(cfg), replica_names()) {}

  // The key a replica's backend wants (the same replica may be listed in several pools).
  std::string replica_key(const std::string& name) const {
    for (const auto& p : cfg.pools)
      for (const auto& r : p.replicas)
        if (r.name == name && !r.api_key.empty()) return r.api_key;
    return {};
  }

  static std::vector<std::string> pool_names(const config& c) {
    std::vector<std::string> out;
    for (const auto& p : c.pools) out.push_back(p.name);
    return out;
  }
  std::vector<std::string> replica_names() const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < sched.replica_count(); ++i) out.push_back(sched.replica_name(i));
    return out;
  }

  config cfg;
  router rt;
  scheduler sched;
  key_store keys;
  metrics met;
  usage_store usage;
  std::vector<backend_addr> backends;
  std::vector<std::unique_ptr<worker>> workers;
  std::atomic<int> bound_port{0};
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> requests_done{0};
  std::atomic<bool> stopping{false};
  bool running = false;
  std::mutex models_mu;
  std::vector<model_status> models;  // on-demand states, as the runner last reported them

  // ---- small response helpers ---------------------------------------------------------------------

  static std::string head(int status, std::string_view content_type, std::size_t length, bool keep_alive,
                          std::string_view extra = {}) {
    return fmt::format("HTTP/1.1 {} {}\r\nServer: agifarm\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
                       reason(status), content_type, length, keep_alive ? "" : "Connection: close\r\n", extra);
  }

  awaitable<bool> send(timed_socket& s, int status, std::string_view content_type, std::string_view body,
                       bool keep_alive, std::string_view extra = {}) {
    std::string h = head(status, content_type, body.size(), keep_alive, extra);
    std::array<net::const_buffer, 2> bufs{net::buffer(h), net::buffer(body)};
    boost::system::error_code ec;
    std::size_t left = write_now(s.sock, bufs, ec);
    if (!ec && left > 0) {
      beast::buffers_suffix<std::array<net::const_buffer, 2>> rest(bufs);
      rest.consume(net::buffer_size(bufs) - left);
      s.expires_after(std::chrono::milliseconds(cfg.limits.idle_timeout_ms));
      auto [wec, n] = co_await net::async_write(s.sock, rest, k_tuple);
      (void)n;
      s.settle(wec);
      ec = wec;
    }
    co_return !ec;
  }

  awaitable<bool> send_error(timed_socket& s, int status, std::string_view message, std::string_view code,
                             bool keep_alive, std::string_view extra = {}) {
    std::string body = openai_error_body(message, error_type_for(status), code);
    co_return co_await send(s, status, "application/json", body, keep_alive, extra);
  }

  // ---- backend connections -------------------------------------------------------------------------

  std::unique_ptr<upstream_conn> take_idle(worker& w, std::size_t replica) {
    auto& v = w.idle[replica];
    while (!v.empty()) {
      auto c = std::move(v.back());
      v.pop_back();
      // No liveness probe here (it would cost a syscall per request): a pooled connection the backend
      // has closed fails on first use and attempt() retries once on a fresh one, not counted against
      // the replica.
      c->reused = true;
      return c;
    }
    return nullptr;
  }

  void put_idle(worker& w, std::size_t replica, std::unique_ptr<upstream_conn> c) {
    if (stopping || w.idle[replica].size() >= k_max_idle_per_replica) return;
    c->stream.disarm();
    c->buffer.clear();
    w.idle[replica].push_back(std::move(c));
  }

  // ---- the proxy path ------------------------------------------------------------------------------

  struct attempt_result {
    enum kind { committed, retryable, client_gone } k = retryable;
    bool keep_alive = false;  // for committed: can the client connection be kept
    std::string why;          // for retryable
    int upstream_status = 0;
  };
  static attempt_result gone() {
    attempt_result r;
    r.k = attempt_result::client_gone;
    return r;
  }

  // The end of an SSE stream whose backend died: a `data: {"error": ...}` event (after closing a
  // half-written event) and the last chunk, replacing what `out` held.
  static void write_error_event(std::string& out, bool tail_ended_event, const std::string& replica,
                                const std::string& failure) {
    std::string frame_text = (tail_ended_event ? "" : "\n\n");
    std::string msg = fmt::format("backend '{}' failed mid-stream: {}", replica, failure);
    frame_text += "data: " + openai_error_body(msg, "server_error", "backend_disconnected") + "\n\n";
    out.clear();
    append_chunk(out, frame_text);
    out += "0\r\n\r\n"sv;
  }

  static void append_decimal(std::string& out, std::uint64_t v) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    out.append(digits, end);
  }


  // One attempt on one replica: send the request, wait for the response header and its first body bytes
  // (the first-byte deadline), then commit and relay to the client until the end.
  awaitable<attempt_result> attempt(worker& w, timed_socket& client, const client_request& req,
                                    std::shared_ptr<request_state> st, const lease& l, bool last_by_count,
                                    std::size_t pool, std::vector<std::size_t>& excluded,
                                    bool client_keep_alive, const clock_type::time_point started, double& ttfb_s,
                                    token_usage& usage_out, bool& usage_found, int& status_out) {
    attempt_result out;
    // set_replica_url assigns this entry in place (posted to this thread), so the reference stays valid.
    const backend_addr& b = w.backends[l.replica];
    auto first_byte = std::chrono::milliseconds(cfg.limits.first_byte_timeout_ms);

    std::string_view accept = header_value(req, http::field::accept);
    if (accept.empty()) accept = "*/*";
    std::unique_ptr<upstream_conn> conn;
    char* buf = nullptr;  // conn->relay once connected
    std::size_t got = 0;
    for (int fresh_try = 0;; ++fresh_try) {
      conn = fresh_try == 0 ? take_idle(w, l.replica) : nullptr;
      if (!conn) {
        conn = std::make_unique<upstream_conn>(w.ioc.get_executor());
        w.timed.push_back(conn->stream);
        conn->stream.expires_after(std::min(first_byte, std::chrono::milliseconds(cfg.limits.connect_timeout_ms)));
        st->upstream = conn.get();
        auto [ec] = co_await conn->stream.sock.async_connect(b.endpoint, k_tuple);
        conn->stream.settle(ec);
        st->upstream = nullptr;
        if (st->client_gone) co_return gone();
        if (ec) {
          out.why = "connect: " + ec.message();
          co_return out;
        }
        conn->stream.sock.set_option(tcp::no_delay(true));
        conn->stream.sock.non_blocking(true);
        readiness::watch_hangup(conn->stream.sock);
      }
      st->upstream = conn.get();
      conn->begin_response();
      std::string& h = conn->request_head;  // (plain appends: fmt's format parsing showed in profiles)
      h.clear();
      h.append(std::string_view(req.method_string())).append(" "sv).append(std::string_view(req.target()));
      h.append(" HTTP/1.1\r\nHost: "sv).append(b.host_header).append(b.auth_lines);
      h.append("\r\nContent-Type: application/json\r\nContent-Length: "sv);
      append_decimal(h, req.body().size());
      h.append("\r\nAccept: "sv).append(accept).append("\r\n\r\n"sv);
      // One deadline for the request's write, the response header and the first body bytes; settled
      // once the first body bytes are in (or the attempt fails).
      conn->stream.expires_after(first_byte);
      std::array<net::const_buffer, 2> bufs{net::buffer(conn->request_head), net::buffer(req.body())};
      boost::system::error_code wec;
      if (std::size_t left = write_now(conn->stream.sock, bufs, wec); !wec && left > 0) {
        beast::buffers_suffix<std::array<net::const_buffer, 2>> rest(bufs);
        rest.consume(net::buffer_size(bufs) - left);
        auto [ec3, wn] = co_await net::async_write(conn->stream.sock, rest, k_tuple);
        (void)wn;
        wec = ec3;
      }
      boost::system::error_code rec;
      while (!wec && !rec && !conn->parser->is_header_done()) {
        std::size_t n = 0;
        if (!conn->read_now(rec, n)) std::tie(rec, n) = conn->waited(co_await conn->wait_read());
        if (rec && rec == net::error::eof)
          rec = conn->parser->got_some() || conn->buffer.size() > 0 ? http::error::partial_message : http::error::end_of_stream;
        if (rec) break;
        conn->buffer.commit(n);
        // The parser is not eager: put() stops after the header, leaving body bytes in the buffer.
        std::size_t used = conn->parser->put(conn->buffer.data(), rec);
        conn->buffer.consume(used);
        if (rec && rec == http::error::need_more) rec = {};
      }
      if (wec) conn->stream.settle(wec);
      else if (rec) conn->stream.settle(rec);
      if (st->client_gone) {
        st->upstream = nullptr;
        co_return gone();
      }
      auto ec = wec ? wec : rec;
      if (ec && conn->reused && fresh_try == 0 && ec != beast::error::timeout) {
        // A pooled connection the backend closed as we used it: not the replica's fault, try a fresh one.
        continue;
      }
      if (ec) {
        st->upstream = nullptr;
        out.why = (ec == beast::error::timeout ? std::string("no response header within first_byte_timeout_ms")
                                               : "backend: " + ec.message());
        co_return out;
      }
      break;
    }
    auto& parser = *conn->parser;
    buf = conn->relay.get();
    auto& res = parser.get();
    int status = static_cast<int>(res.result_int());
    out.upstream_status = status;
    // The last attempt relays whatever the backend says (a 5xx included): no retries left, or no other
    // replica to retry on (asked only here: it takes the scheduler's lock).
    auto is_last_attempt = [&] {
      if (last_by_count) return true;
      excluded.push_back(l.replica);
      bool untried = sched.has_untried(pool, excluded);
      excluded.pop_back();
      return !untried;
    };
    if (status >= 500 && !is_last_attempt()) {
      st->upstream = nullptr;
      out.why = fmt::format("backend answered HTTP {}", status);
      co_return out;  // conn dropped (closed by destructor)
    }
    // First body bytes (still under the first-byte deadline), so a backend that dies before producing
    // anything is retried rather than committed.
    // (Not a lambda coroutine: that would allocate a frame per read.)
    auto prepare_read = [&] {
      res.body().data = buf;
      res.body().size = k_relay_buffer;
    };
    // Bytes read from the backend into its buffer; at EOF the parser decides whether the body ended
    // (a body delimited by the connection's close) or was cut.
    auto commit_read = [&](boost::system::error_code ec, std::size_t n) {
      if (!ec) conn->buffer.commit(n);
      else if (ec == net::error::eof) parser.put_eof(ec);
      return ec;
    };
    auto after_read = [&](boost::system::error_code ec) {
      if (ec && ec == http::error::need_buffer) ec = {};
      if (ec) conn->stream.settle(ec);
      // Parse what else is already buffered, so a burst of chunks becomes one client write.
      while (!ec && !parser.is_done() && conn->buffer.size() > 0 && res.body().size > 0) {
        boost::system::error_code pec;
        std::size_t used = parser.put(conn->buffer.data(), pec);
        conn->buffer.consume(used);
        if (pec && (pec == http::error::need_buffer || pec == http::error::need_more)) break;
        if (pec) {
          ec = pec;
          break;
        }
        if (used == 0) break;
      }
      got = k_relay_buffer - res.body().size;
      return ec;
    };
    boost::system::error_code ec;
    while (!parser.is_done() && got == 0) {
      prepare_read();
      if (conn->buffer.size() > 0) {  // the header's read usually brought body bytes too
        ec = after_read({});
        if (ec || got > 0 || parser.is_done()) break;
      }
      boost::system::error_code rec;
      std::size_t rn = 0;
      if (!conn->read_now(rec, rn)) std::tie(rec, rn) = conn->waited(co_await conn->wait_read());
      ec = after_read(commit_read(rec, rn));
      if (ec || st->client_gone) break;
    }
    if (st->client_gone) {
      st->upstream = nullptr;
      co_return gone();
    }
    if (ec) {
      st->upstream = nullptr;
      out.why = ec == beast::error::timeout ? std::string("no first byte within first_byte_timeout_ms")
                                            : "backend: " + ec.message();
      co_return out;
    }

    // ---- committed: from here the response belongs to this replica --------------------------------
    out.k = attempt_result::committed;
    status_out = status;
    const response_shape shape = start_response(*conn, status, req.version() >= 11, client_keep_alive && !stopping);
    const bool sse = shape.sse, chunked = shape.chunked, http11 = shape.http11, has_length = !shape.chunked;
    bool keep_alive = shape.keep_alive;
    usage_scanner& scanner = conn->scanner;
    std::string& out_buf = conn->out;  // bytes to write to the client this round

    conn->take(std::string_view(buf, got));
    ttfb_s = std::chrono::duration<double>(clock_type::now() - started).count();

    auto idle = std::chrono::milliseconds(cfg.limits.stream_idle_timeout_ms);
    bool upstream_failed = false;
    std::string failure;
    for (;;) {
      // One write site for the body and its end: the final round adds the rest of the body and the
      // last chunk, and no longer watches for the client (nothing left to stop upstream).
      const bool done = parser.is_done();
      if (done) {
        st->upstream = nullptr;
        conn->flush_tail();
        if (chunked && http11) out_buf += "0\r\n\r\n"sv;
      }
      if (!out_buf.empty()) {
        boost::system::error_code wec;
        if (std::size_t left = write_now(client.sock, net::buffer(out_buf), wec); !wec && left > 0) {
          client.expires_after(idle);
          auto [ec3, wn] = co_await net::async_write(client.sock, net::buffer(out_buf.data() + out_buf.size() - left, left), k_tuple);
          (void)wn;
          client.settle(ec3);
          wec = ec3;
        }
        out_buf.clear();
        if (done) {
          if (wec) keep_alive = false;
        } else if (wec || st->client_gone) {
          // The client went away: close the upstream at once so the backend stops generating.
          st->client_gone = true;
          st->upstream = nullptr;
          beast::error_code ignored;
          conn->stream.sock.close(ignored);
          usage_found = false;
          if (auto u = scanner.finish()) usage_out = *u, usage_found = true;
          co_return gone();
        }
      }
      if (done) break;
      prepare_read();
      got = 0;
      ec = {};
      if (conn->buffer.size() > 0) ec = after_read({});  // left over when the relay buffer filled up
      if (!ec && got == 0 && !parser.is_done()) {
        conn->stream.expires_after(idle);
        boost::system::error_code rec;
        std::size_t rn = 0;
        if (!conn->read_now(rec, rn)) std::tie(rec, rn) = conn->waited(co_await conn->wait_read());
        ec = after_read(commit_read(rec, rn));
      }
      if (st->client_gone) {
        st->upstream = nullptr;
        co_return gone();
      }
      if (ec) {
        upstream_failed = true;
        failure = ec == beast::error::timeout ? std::string("backend went silent mid-response") : ec.message();
        break;
      }
      conn->take(std::string_view(buf, got));
    }
    st->upstream = nullptr;
    if (auto u = scanner.finish()) {
      usage_out = *u;
      usage_found = true;
    }
    if (upstream_failed) {
      // Mid-stream death: never replayed. SSE clients get a final error event and a clean end (no
      // [DONE]); other bodies are cut (the client sees a truncated response).
      if (sse && chunked && http11) {
        write_error_event(out_buf, conn->sse_tail.empty(), sched.replica_name(l.replica), failure);
        client.expires_after(idle);
        auto [fec, fn] = co_await net::async_write(client.sock, net::buffer(out_buf), k_tuple);
        (void)fn;
        client.settle(fec);
        out.keep_alive = keep_alive && !fec;
      } else {
        out.keep_alive = false;
      }
      status_out = 599;  // recorded as a failed stream in metrics (the client saw `status`)
      out.why = failure;
      out.upstream_status = -1;
      co_return out;
    }
    if (res.keep_alive() && conn->buffer.size() == 0) put_idle(w, l.replica, std::move(conn));
    out.keep_alive = keep_alive && (has_length || http11);
    co_return out;
  }

  // Watches the client socket of a request that has lasted k_watch_delay (armed by the sweeper): EOF or
  // error means the client went away, and the upstream is closed at once. Requests that finish sooner
  // (most, through a fast backend) cost nothing. Mid-stream, a client that left is also noticed at once
  // by the next failed write.
  static constexpr auto k_watch_delay = std::chrono::milliseconds(100);
  static void arm_watch(const std::shared_ptr<request_state>& st) {
    st->watching = true;
    st->client.sock.async_wait(
        tcp::socket::wait_read, net::bind_cancellation_slot(st->watch_cancel.slot(), [st](boost::system::error_code ec) {
          if (ec || st->done) return;
          char byte;
          ssize_t n = ::recv(st->client.sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) return;  // pipelined data: not gone
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
  clock_type::duration sweep_interval() const {
    const auto& l = cfg.limits;
    int shortest = std::min({l.header_timeout_ms, l.idle_timeout_ms, l.first_byte_timeout_ms, l.connect_timeout_ms,
                             l.stream_idle_timeout_ms});
    return std::chrono::milliseconds(std::clamp(shortest / 8, 10, 250));
  }

  // Enforces the deadlines of this worker's sockets and arms the client watch of lasting requests.
  awaitable<void> sweeper(worker& w) {
    timer_type t(w.ioc.get_executor());
    const auto tick = sweep_interval();
    for (;;) {
      t.expires_after(tick);
      auto [ec] = co_await t.async_wait(k_tuple);
      if (ec) co_return;
      const auto now = clock_type::now();
      for (auto& s : w.timed) {
        if (!s.fired && s.deadline <= now) {
          s.fired = true;
          beast::error_code ignored;
          s.sock.cancel(ignored);
        }
      }
      for (auto& r : w.in_flight)
        if (!r.watching && !r.done && now - r.started >= k_watch_delay) arm_watch(r.shared_from_this());
    }
  }

  // Waits for a queued request's grant. Returns the grant, or nullopt when the client went away.
  awaitable<std::optional<grant>> wait_grant(std::shared_ptr<request_state> st, std::uint64_t ticket,
                                             clock_type::time_point deadline) {
    st->waiting = true;
    st->wait_timer().expires_at(deadline);
    for (;;) {
      auto [ec] = co_await st->wait_timer().async_wait(k_tuple);
      if (st->granted) break;
      if (st->client_gone) {
        if (sched.cancel(ticket)) {
          st->waiting = false;
          co_return std::nullopt;
        }
        st->wait_timer().expires_at(clock_type::time_point::max());  // a grant is on its way
        continue;
      }
      if (!ec) {
        sched.expire(clock_type::now());  // calls back every waiter past its deadline, us included
        if (!st->granted) st->wait_timer().expires_at(clock_type::now() + std::chrono::milliseconds(5));
      }
    }
    st->waiting = false;
    if (st->client_gone && st->granted->status == grant_status::granted) {
      sched.release(st->granted->l, outcome::neutral, clock_type::now());
      co_return std::nullopt;
    }
    co_return st->granted;
  }

  struct error_reply {
    int status = 0;
    std::string message;
    const char* code = "";
    std::string extra;  // more header lines
  };
  struct admitted {
    std::optional<std::size_t> key;
    request_info info;
    std::size_t pool = 0;
  };
  // The checks before a request may take a slot, in order: API key, body, route, the key's models,
  // the key's rate. Counts refusals in the metrics.
  // (Out-parameters, not a returned variant: proxy()'s frame holds each only once.)
  // The configured key the request presents (Authorization: Bearer, or x-api-key), if any.
  std::optional<std::size_t> presented_key(const client_request& req) const {
    return keys.authenticate(header_value(req, http::field::authorization), header_value(req, "x-api-key"));
  }

  std::optional<error_reply> admit(const client_request& req, endpoint kind, admitted& a) {
    if (keys.enabled()) {
      a.key = presented_key(req);
      if (!a.key) {
        met.request_done(k_no_index, k_no_index, 401, 0);
        return error_reply{401, "Missing or invalid API key (send Authorization: Bearer <key>).", "invalid_api_key", ""};
      }
    }
    auto info = inspect_request(req.body(), kind);
    if (!info) {
      met.request_done(k_no_index, k_no_index, 400, 0);
      return error_reply{400, info.err().message, "invalid_request", ""};
    }
    a.info = std::move(*info);
    auto pool = rt.find(a.info.model);
    if (!pool) {
      met.request_done(k_no_index, k_no_index, 404, 0);
      return error_reply{404, rt.unknown_model_message(a.info.model), "model_not_found", ""};
    }
    a.pool = *pool;
    if (a.key && !keys.allows(*a.key, a.info.model, rt.pool_name(a.pool))) {
      met.request_done(a.pool, k_no_index, 403, 0);
      return error_reply{403, fmt::format("API key '{}' may not use model '{}'.", keys.name(*a.key), a.info.model),
                         "model_not_allowed", ""};
    }
    if (a.key) {
      if (int wait = keys.take(*a.key, clock_type::now())) {
        met.request_done(a.pool, k_no_index, 429, 0);
        return error_reply{429,
                           fmt::format("API key '{}' is over its rate_per_minute; retry in {} s.", keys.name(*a.key), wait),
                           "rate_limit_exceeded", fmt::format("Retry-After: {}\r\n", wait)};
      }
    }
    return std::nullopt;
  }

  struct response_shape {
    bool sse = false, chunked = false, http11 = false, keep_alive = false;
  };
  // Starts relaying the response whose header `conn` has read: the client's response head goes into
  // conn.out, the usage scanner is reset for the body's kind. (A plain function: see acquire_slot.)
  static response_shape start_response(upstream_conn& conn, int status, bool http11, bool client_keep_alive) {
    auto& res = conn.parser->get();
    std::string_view content_type = header_value(res, http::field::content_type);
    if (content_type.empty()) content_type = "application/json";
    response_shape r;
    r.sse = content_type.find("text/event-stream") != std::string::npos;
    const auto content_length = conn.parser->content_length();
    r.chunked = !content_length.has_value();
    r.http11 = http11;
    r.keep_alive = client_keep_alive && (!r.chunked || http11);
    conn.scanner.reset(r.sse);
    conn.sse = r.sse;
    conn.chunked_out = r.chunked && http11;
    conn.sse_tail.clear();
    std::string& out = conn.out;
    out.clear();
    out.append("HTTP/1.1 "sv);
    append_decimal(out, static_cast<std::uint64_t>(status));
    out.append(" "sv).append(reason(status)).append("\r\nServer: agifarm\r\nContent-Type: "sv).append(content_type);
    out.append("\r\n"sv);
    if (content_length) {
      out.append("Content-Length: "sv);
      append_decimal(out, *content_length);
      out.append("\r\n"sv);
    } else if (http11) {
      out += "Transfer-Encoding: chunked\r\n"sv;
    }
    if (r.sse) out += "Cache-Control: no-cache\r\n"sv;
    if (!r.keep_alive) out += "Connection: close\r\n"sv;
    out += "\r\n"sv;
    return r;
  }

  // How long a request may wait in the pool's queue: an on-demand pool's model may have to load first.
  std::chrono::milliseconds queue_wait(std::size_t pool) const {
    int ms = cfg.queue.timeout_ms;
    if (sched.on_demand(pool)) ms = std::max(ms, cfg.pools[pool].load_timeout_ms);
    return std::chrono::milliseconds(ms);
  }
  // The message of a 503 (1503: the on-demand loader refused the model) or 429.
  std::string reject_message(std::size_t pool, int reject) const {
    if (reject == 1503) return sched.refusal(pool);
    if (reject == 503 && sched.on_demand(pool))
      return fmt::format("Model '{}' is loaded on demand and did not become ready within {} ms.", rt.pool_name(pool),
                         queue_wait(pool).count());
    if (reject == 503) return fmt::format("No healthy replica of '{}' is available.", rt.pool_name(pool));
    return fmt::format("All replicas of '{}' are busy and its queue is full or the wait exceeded {} ms.",
                       rt.pool_name(pool), queue_wait(pool).count());
  }

  // Asks the scheduler for a slot: a lease, a queue ticket (the grant comes to `st`), or a refusal.
  // (A plain function: GCC keeps every local of a coroutine in its heap frame.)
  void acquire_slot(std::size_t pool, const pick_request& pick, const std::vector<std::size_t>& excluded,
                    clock_type::time_point deadline, const std::shared_ptr<request_state>& st, std::optional<lease>& l,
                    int& reject, std::optional<std::uint64_t>& ticket) {
    // The grant callback is made only if the request is queued (see acquire_lazy).
    auto ar = sched.acquire_lazy(pool, pick, excluded, clock_type::now(), deadline, [&st]() -> grant_callback {
      return [weak = std::weak_ptr<request_state>(st)](grant g) {
        if (auto s = weak.lock()) {
          net::post(s->ex, [s, g] {
            s->granted = g;
            s->cancel_wait();
          });
        }
      };
    });
    if (ar.wants_load && cfg.on_demand_wanted) cfg.on_demand_wanted(sched.pool_name(pool));
    switch (ar.status) {
      case acquire_status::granted: l = ar.l; break;
      case acquire_status::queued: ticket = ar.ticket; break;
      case acquire_status::queue_full: reject = 429; break;
      case acquire_status::no_healthy: reject = 503; break;
      case acquire_status::exhausted: reject = 502; break;
    }
  }

  // Handles one POST to a model endpoint. Returns whether the client connection may be kept.
  awaitable<bool> proxy(worker& w, timed_socket& client, client_request& req, endpoint kind,
                        clock_type::time_point started) {
    bool keep = req.keep_alive() && !stopping;
    // One co_await site for every error reply: each site keeps its own temporaries in the coroutine
    // frame, and a frame above 1 KiB is a malloc per request.
    admitted ok;
    std::optional<error_reply> fail = admit(req, kind, ok);
    if (fail) co_return co_await send_error(client, fail->status, fail->message, fail->code, keep, fail->extra) && keep;
    const std::optional<std::size_t>& key = ok.key;
    const std::size_t pool = ok.pool;
    pick_request pick;
    if (auto sess = header_value(req, std::string_view(cfg.session_header)); !sess.empty()) {
      pick.has_key = true;
      pick.session = true;
      pick.key = hash64(sess);
    } else if (ok.info.has_affinity) {
      pick.has_key = true;
      pick.key = ok.info.affinity_hash;
    }

    auto st = std::allocate_shared<request_state>(recycling_allocator<request_state>{}, w.ioc.get_executor(), client, started);
    w.in_flight.push_back(*st);
    struct watch_guard {
      std::shared_ptr<request_state> st;
      ~watch_guard() {
        st->done = true;
        st->unlink();
        if (st->watching) st->watch_cancel.emit(net::cancellation_type::all);
      }
    } guard{st};

    std::vector<std::size_t> excluded;
    std::string last_failure;
    int final_status = 0;
    std::size_t final_replica = k_no_index;
    double ttfb_s = -1;
    token_usage usage{};
    bool usage_found = false;
    bool result_keep = keep;
    bool committed = false;
    const int attempts = 1 + std::max(0, cfg.limits.retries);
    for (int a = 0; a < attempts && !committed; ++a) {
      if (a > 0) {
        met.retry(pool);
        // Jittered exponential backoff: base * 2^(a-1) * [0.5, 1.5).
        double base = cfg.limits.retry_backoff_ms * static_cast<double>(1 << std::min(a - 1, 8));
        std::uniform_real_distribution<double> jitter(0.5, 1.5);
        st->wait_timer().expires_after(std::chrono::microseconds(static_cast<long long>(base * jitter(w.rng) * 1000)));
        st->waiting = true;
        co_await st->wait_timer().async_wait(k_tuple);
        st->waiting = false;
        if (st->client_gone) break;
      }
      auto deadline = clock_type::now() + queue_wait(pool);
      std::optional<lease> l;
      int reject = 0;
      std::optional<std::uint64_t> ticket;
      acquire_slot(pool, pick, excluded, deadline, st, l, reject, ticket);
      if (ticket) {
        auto g = co_await wait_grant(st, *ticket, deadline);
        st->granted.reset();
        if (g) {  // else the client is gone
          if (g->status == grant_status::granted) l = g->l;
          else reject = g->status == grant_status::no_healthy || g->status == grant_status::refused ? 503 : 429;
          if (g->status == grant_status::refused) reject = 1503;  // refused by the on-demand loader
        }
      }
      if (st->client_gone) break;
      if (reject) {
        if (reject == 502) {
          final_status = reject;
          break;  // every replica tried: report the last failure below
        }
        std::string msg = reject_message(pool, reject);
        if (reject == 1503) reject = 503;
        final_status = reject;
        met.request_done(pool, k_no_index, reject, std::chrono::duration<double>(clock_type::now() - started).count());
        fail = error_reply{reject, std::move(msg), reject == 503 ? "no_healthy_replica" : "queue_full",
                           "Retry-After: 1\r\n"};
        break;
      }
      if (!l) break;
      final_replica = l->replica;
      int status = 0;
      auto r = co_await attempt(w, client, req, st, *l, a + 1 == attempts, pool, excluded, keep, started, ttfb_s, usage, usage_found, status);
      if (r.k == attempt_result::committed) {
        committed = true;
        final_status = status;
        result_keep = r.keep_alive;
        bool failed = r.upstream_status == -1 || r.upstream_status >= 500;
        if (r.upstream_status == -1)
          spdlog::warn("gateway: {} -> {}: failed mid-response: {}", rt.pool_name(pool), sched.replica_name(l->replica),
                       r.why);
        if (sched.release(*l, failed ? outcome::failure : outcome::success, clock_type::now()))
          spdlog::warn("gateway: replica {} ejected after repeated failures", sched.replica_name(l->replica));
      } else if (r.k == attempt_result::client_gone) {
        st->client_gone = true;
        sched.release(*l, outcome::neutral, clock_type::now());
        break;
      } else {
        last_failure = r.why;
        excluded.push_back(l->replica);
        spdlog::warn("gateway: {} -> {}: {} (attempt {} of {})", rt.pool_name(pool), sched.replica_name(l->replica),
                     r.why, a + 1, attempts);
        if (sched.release(*l, outcome::failure, clock_type::now()))
          spdlog::warn("gateway: replica {} ejected after repeated failures", sched.replica_name(l->replica));
      }
    }
    double duration = std::chrono::duration<double>(clock_type::now() - started).count();
    auto key_name = [&] { return key ? keys.name(*key) : std::string("anonymous"); };
    if (st->client_gone) {
      met.request_done(pool, final_replica, 499, duration, ttfb_s);
      if (usage_found) met.tokens(pool, usage.prompt, usage.completion);
      usage.prompt = usage_found ? usage.prompt : 0;
      this->usage.add(key_name(), 1, usage_found ? usage : token_usage{});
      co_return false;
    }
    if (!committed && !fail) {  // (fail: refused by the queue, already counted)
      int status = final_status == 0 || final_status == 502 ? 502 : final_status;
      if (last_failure.empty() && final_status == 0) last_failure = "no attempt was made";
      if (last_failure.find("first_byte_timeout_ms") != std::string::npos) status = 504;
      met.request_done(pool, final_replica, status, duration);
      fail = error_reply{status,
                         fmt::format("Every attempt on pool '{}' failed before the first byte; last: {}",
                                     rt.pool_name(pool), last_failure),
                         "backend_unavailable", ""};
    }
    if (fail) co_return co_await send_error(client, fail->status, fail->message, fail->code, keep, fail->extra) && keep;
    met.request_done(pool, final_replica, final_status, duration, ttfb_s);
    if (usage_found) met.tokens(pool, usage.prompt, usage.completion);
    this->usage.add(key_name(), 1, usage_found ? usage : token_usage{});
    co_return result_keep;
  }

  // ---- non-proxied endpoints -----------------------------------------------------------------------

  std::string usage_json(std::optional<std::size_t> key) const {
    namespace json = boost::json;
    json::array data;
    for (const auto& r : usage.rows()) {
      if (key && r.key != keys.name(*key)) continue;
      data.push_back(json::object{{"key", r.key},
                                  {"requests", r.requests},
                                  {"prompt_tokens", r.prompt_tokens},
                                  {"completion_tokens", r.completion_tokens}});
    }
    return json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}});
  }

  std::string health_json() const {
    auto rs = sched.replica_states();
    int usable = 0;
    for (const auto& r : rs) usable += (r.ready && !r.ejected) ? 1 : 0;
    return fmt::format(R"({{"status":"{}","replicas":{},"usable_replicas":{}}})", usable ? "ok" : "degraded",
                       rs.size(), usable);
  }

  // A POST to one of the model endpoints: the kind. (session() calls proxy() for these straight away,
  // one coroutine frame fewer per request than going through handle().)
  static std::optional<endpoint> proxied_endpoint(const client_request& req) {
    if (req.method() != http::verb::post) return std::nullopt;
    return model_endpoint(path_of(req));
  }

  // The request target without its query string.
  static std::string_view path_of(const client_request& req) {
    std::string_view target = req.target();
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    return target;
  }

  static std::optional<endpoint> model_endpoint(std::string_view path) {
    struct route {
      std::string_view path;
      endpoint kind;
    };
    static constexpr route k_routes[] = {{"/v1/chat/completions", endpoint::chat_completions},
                                         {"/v1/completions", endpoint::completions},
                                         {"/v1/embeddings", endpoint::embeddings},
                                         {"/v1/messages", endpoint::messages}};
    for (const auto& r : k_routes)
      if (path == r.path) return r.kind;
    return std::nullopt;
  }

  // Everything but a POST to a model endpoint (session() sends those to proxy()).
  awaitable<bool> handle(timed_socket& client, client_request& req) {
    bool keep = req.keep_alive() && !stopping;
    const std::string_view target = path_of(req);
    const auto method = req.method();
    auto authed = [&]() -> std::optional<std::optional<std::size_t>> {
      if (!keys.enabled()) return std::optional<std::size_t>{};
      auto k = presented_key(req);
      if (!k) return std::nullopt;
      return k;
    };
    if (method == http::verb::get || method == http::verb::head) {
      if (target == "/health") {
        co_return co_await send(client, 200, "application/json", health_json(), keep) && keep;
      }
      if (target == "/metrics") {
        std::string body = met.render(sched.replica_states(), sched.pool_states(), open_connections.load());
        {
          std::lock_guard lk(models_mu);
          if (!models.empty()) body += render_models(models);
        }
        co_return co_await send(client, 200, "text/plain; version=0.0.4; charset=utf-8", body, keep) && keep;
      }
      if (target == "/v1/models" || target == "/v1/usage") {
        auto k = authed();
        if (!k) {
          co_return co_await send_error(client, 401, "Missing or invalid API key (send Authorization: Bearer <key>).",
                                        "invalid_api_key", keep) && keep;
        }
        std::string body = target == "/v1/models" ? rt.models_json() : usage_json(*k);
        co_return co_await send(client, 200, "application/json", body, keep) && keep;
      }
    }
    bool known = target == "/health" || target == "/metrics" || target == "/v1/models" || target == "/v1/usage";
    known = known || model_endpoint(target).has_value();
    if (known) {
      co_return co_await send_error(client, 405, fmt::format("Method {} is not allowed on {}.",
                                                             std::string_view(req.method_string()), target),
                                    "method_not_allowed", keep) && keep;
    }
    co_return co_await send_error(client, 404, fmt::format("No endpoint {} {}.", std::string_view(req.method_string()),
                                                           std::string(target.substr(0, 200))),
                                  "not_found", keep) && keep;
  }

  // ---- client connections --------------------------------------------------------------------------

  awaitable<void> session(worker& w, socket_type sock) {
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
        if (hec == http::error::body_limit) {
          met.request_done(k_no_index, k_no_index, 413, 0);
          co_await send_error(stream, 413,
                              fmt::format("The request body exceeds max_body_bytes ({} bytes).", cfg.limits.max_body_bytes),
                              "request_too_large", false);
        } else if (hec == http::error::header_limit) {
          met.request_done(k_no_index, k_no_index, 431, 0);
          co_await send_error(stream, 431,
                              fmt::format("The request header exceeds {} bytes.", cfg.limits.max_header_bytes),
                              "header_too_large", false);
        } else if (hec.category() == make_error_code(http::error::bad_target).category() && hec != http::error::end_of_stream &&
                   hec != http::error::partial_message) {
          met.request_done(k_no_index, k_no_index, 400, 0);
          co_await send_error(stream, 400, "Malformed HTTP request: " + hec.message(), "malformed_http", false);
        }
        // timeouts, resets, EOF: just close
        break;
      }
      auto& req = parser.get();
      bool keep = false;
      if (auto kind = proxied_endpoint(req)) keep = co_await proxy(w, stream, req, *kind, started);
      else keep = co_await handle(stream, req);
      requests_done++;
      if (!keep) break;
    }
    beast::error_code ignored;
    stream.sock.shutdown(tcp::socket::shutdown_send, ignored);
    stream.sock.close(ignored);
  }

  awaitable<void> accept_loop(worker& w) {
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
        std::string body = openai_error_body("The gateway is at max_connections.", "server_error", "overloaded");
        std::string msg = head(503, "application/json", body.size(), false, "Retry-After: 1\r\n") + body;
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

  // ---- background: active health checks of ejected replicas, usage persistence --------------------

  awaitable<bool> probe(worker& w, std::size_t replica) {
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

  awaitable<void> background(worker& w) {
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
        if (ok) spdlog::info("gateway: replica {} passed /health and is back in rotation", sched.replica_name(r));
      }
      if (clock_type::now() - last_flush >= std::chrono::seconds(1)) {
        last_flush = clock_type::now();
        if (auto s = usage.flush(); !s) spdlog::error("gateway: {}", s.err().message);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------------

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
      wp->idle[r].clear();
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
    auto a = resolve_backend(m.sched.replica_name(r), m.sched.replica_url(r), m.replica_key(m.sched.replica_name(r)));
    if (!a) return make_error(a.err().message);
    m.backends.push_back(*a);
  }
  if (auto s = m.usage.open(m.cfg.usage_db); !s) return s;

  boost::system::error_code ec;
  std::string lhost = m.cfg.listen_host == "localhost" ? "127.0.0.1" : m.cfg.listen_host;
  auto addr = net::ip::make_address(lhost, ec);
  if (ec) return make_error(fmt::format("listen {}: not a numeric IP address", m.cfg.listen_host));
  unsigned threads = m.cfg.threads > 0 ? static_cast<unsigned>(m.cfg.threads) : std::max(1u, std::thread::hardware_concurrency());
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
    spdlog::info("gateway: listening on {}:{} ({} threads); no api_keys configured, so bound to loopback only",
                 m.cfg.listen_host, port, threads);
  return {};
}

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
