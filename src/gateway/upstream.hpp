// upstream: the gateway's side of a backend. A backend's address (backend_addr), one keep-alive
// connection with its read buffer and the per-request texts it keeps warm (upstream_conn, which also
// frames the body it reads for the client), and a worker's idle pool of such connections per replica
// (upstream_pool). Internal to src/gateway; everything here runs on one worker thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/result.hpp"
#include "gateway/fail_count.hpp"
#include "gateway/read_readiness.hpp"
#include "gateway/timed_socket.hpp"
#include "gateway/usage.hpp"

namespace agifarm::gateway {

constexpr std::size_t k_relay_buffer = 16384;
constexpr std::size_t k_max_idle_per_replica = 256;

struct backend_addr {
  tcp::endpoint endpoint;
  std::string host_header;
  std::string auth_lines;  // "\r\nAuthorization: Bearer <key>" for a backend with a key, else ""
};

// "http://host:port" with a numeric host -> the endpoint and Host header; errors name the replica.
result<backend_addr> resolve_backend(const std::string& name, const std::string& url, const std::string& key);

// One backend connection with its read buffer; lives in a worker's idle pool between requests.
struct upstream_conn {
  // Reads ask for up to k_read_size bytes: a burst of SSE events is one read.
  static constexpr std::size_t k_read_size = 65536;
  using response_parser = http::response_parser<http::buffer_body, field_allocator>;
  explicit upstream_conn(const executor_type& ex) : stream(ex), relay(new char[k_relay_buffer]) {
    buffer.reserve(k_read_size);
  }
  timed_socket stream;
  beast::flat_buffer buffer;
  fail_count* faults = nullptr;  // tests only (gateway/testing.hpp)
  // A read from the backend into `buffer`, in halves so that the await stays in the caller's coroutine
  // (a helper coroutine would cost a frame per read): read_now() settles it when it can (see
  // readiness::read_now); otherwise `co_await wait_read()` and pass its result through waited(). The
  // caller commits the bytes.
  net::mutable_buffer space;
  bool read_now(boost::system::error_code& ec, std::size_t& n) {
    if (faults && faults->fail(upstream_op::read, ec)) [[unlikely]] {
      n = 0;
      return true;
    }
    space = buffer.prepare(beast::read_size(buffer, k_read_size));
    return readiness::read_now(stream.sock, space, ec, n);
  }
  auto wait_read() { return stream.sock.async_read_some(space, k_tuple); }
  std::tuple<boost::system::error_code, std::size_t> waited(
      std::tuple<boost::system::error_code, std::size_t> r) {
    readiness::after_wait(stream.sock, std::get<0>(r), std::get<1>(r), space.size());
    return r;
  }
  // Whether the next write (or connect) is to fail (tests only; sets `ec`).
  bool injected(upstream_op op, boost::system::error_code& ec) { return faults && faults->fail(op, ec); }

  // Body bytes on their way to the client, and the texts built per request: they live with the pooled
  // connection and keep their capacity, so a warm connection's requests allocate none of them.
  std::unique_ptr<char[]> relay;
  std::size_t got = 0;       // body bytes in `relay` from the last read
  std::string request_head;  // the request line and headers sent to the backend
  std::string out;           // bytes to write to the client this round
  std::string sse_tail;      // SSE: bytes after the last complete event
  usage_scanner scanner;
  // The response being read (kept here, not in a coroutine frame).
  std::optional<response_parser> parser;
  void begin_response() {
    parser.emplace();
    parser->body_limit(boost::none);
  }

  // ---- reading the body into `relay` (plain functions, not lambda coroutines: no frame per read) ----
  void prepare_read() {
    parser->get().body().data = relay.get();
    parser->get().body().size = k_relay_buffer;
  }
  // Bytes read from the backend into its buffer; at EOF the parser decides whether the body ended (a
  // body delimited by the connection's close) or was cut.
  boost::system::error_code commit_read(boost::system::error_code ec, std::size_t n) {
    if (!ec)
      buffer.commit(n);
    else if (ec == net::error::eof)
      parser->put_eof(ec);
    return ec;
  }
  // Parses what is buffered into `relay` (so a burst of chunks becomes one client write); sets `got`.
  boost::system::error_code after_read(boost::system::error_code ec) {
    auto& p = *parser;
    if (ec && ec == http::error::need_buffer) ec = {};
    if (ec) stream.settle(ec);
    while (!ec && !p.is_done() && buffer.size() > 0 && p.get().body().size > 0) {
      boost::system::error_code pec;
      std::size_t used = p.put(buffer.data(), pec);
      buffer.consume(used);
      if (pec && (pec == http::error::need_buffer || pec == http::error::need_more)) break;
      if (pec) {
        ec = pec;
        break;
      }
      if (used == 0) break;
    }
    got = k_relay_buffer - p.get().body().size;
    return ec;
  }

  // ---- framing the body for the client ------------------------------------------------------------
  bool sse = false;
  bool chunked_out = false;  // HTTP/1.1 chunked framing towards the client
  void frame(std::string_view data) {
    if (data.empty()) return;
    if (chunked_out)
      append_chunk(out, data);
    else
      out.append(data);
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
      take_more_sse(data);
    }
  }
  void take_more_sse(std::string_view data) {
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
  // The rest of a body that ended without a final blank line.
  void flush_tail() {
    frame(sse_tail);
    sse_tail.clear();
  }
  bool reused = false;
};

// How the response goes to the client, fixed when it is committed.
struct response_shape {
  bool sse = false, chunked = false, http11 = false, keep_alive = false;
};
// Starts relaying the response whose header `conn` has read: the client's response head goes into
// conn.out, the usage scanner is reset for the body's kind.
response_shape start_response(upstream_conn& conn, int status, bool http11, bool client_keep_alive);

// A worker's keep-alive connections to its backends, per global replica index.
class upstream_pool {
 public:
  explicit upstream_pool(std::size_t replicas) : idle_(replicas) {}
  // A pooled connection, or nullptr. No liveness probe here (it would cost a syscall per request): a
  // pooled connection the backend has closed fails on first use and the attempt retries once on a
  // fresh one, not counted against the replica.
  std::unique_ptr<upstream_conn> take(std::size_t replica) {
    auto& v = idle_[replica];
    if (v.empty()) return nullptr;
    auto c = std::move(v.back());
    v.pop_back();
    c->reused = true;
    return c;
  }
  void put(std::size_t replica, std::unique_ptr<upstream_conn> c) {
    if (idle_[replica].size() >= k_max_idle_per_replica) return;
    c->stream.disarm();
    c->buffer.clear();
    idle_[replica].push_back(std::move(c));
  }
  // Drops the replica's pooled connections (its backend moved).
  void clear(std::size_t replica) { idle_[replica].clear(); }

 private:
  std::vector<std::vector<std::unique_ptr<upstream_conn>>> idle_;
};

}  // namespace agifarm::gateway
