// attempt: one attempt on one replica up to the backend's response header: a pooled or fresh
// connection, the request written, the header read (under the first-byte deadline). relay.cpp goes on
// from there.
#include <fmt/format.h>

#include "gateway/server_impl.hpp"

namespace agifarm::gateway {

std::unique_ptr<upstream_conn> server::impl::take_idle(worker& w, std::size_t replica) {
  auto c = w.upstream.take(replica);
  if (c) c->faults = faults.get();
  return c;
}

void server::impl::put_idle(worker& w, std::size_t replica, std::unique_ptr<upstream_conn> c) {
  if (!stopping) w.upstream.put(replica, std::move(c));
}

namespace {

// The request line and headers sent to the backend, into conn.request_head (plain appends: fmt's
// format parsing showed in profiles).
void compose_request_head(upstream_conn& conn, const client_request& req, const backend_addr& b) {
  std::string_view accept = header_value(req, http::field::accept);
  if (accept.empty()) accept = "*/*";
  std::string& h = conn.request_head;
  h.clear();
  h.append(std::string_view(req.method_string())).append(" "sv).append(std::string_view(req.target()));
  h.append(" HTTP/1.1\r\nHost: "sv).append(b.host_header).append(b.auth_lines);
  h.append("\r\nContent-Type: application/json\r\nContent-Length: "sv);
  append_decimal(h, req.body().size());
  h.append("\r\nAccept: "sv).append(accept).append("\r\n\r\n"sv);
}

// Parses what the header's reads brought: the parser is not eager, so put() stops after the header,
// leaving body bytes in the buffer.
void parse_head(upstream_conn& conn, boost::system::error_code& ec) {
  std::size_t used = conn.parser->put(conn.buffer.data(), ec);
  conn.buffer.consume(used);
  if (ec && ec == http::error::need_more) ec = {};
}

}  // namespace

// A fresh connection to the backend (under connect_timeout_ms, or the first-byte deadline if shorter).
awaitable<boost::system::error_code> server::impl::connect(proxy_call& c, upstream_conn& conn,
                                                           const backend_addr& b) {
  auto first_byte = std::chrono::milliseconds(cfg.limits.first_byte_timeout_ms);
  c.w.timed.push_back(conn.stream);
  conn.stream.expires_after(std::min(first_byte, std::chrono::milliseconds(cfg.limits.connect_timeout_ms)));
  c.st->upstream = &conn;
  boost::system::error_code ec;
  if (!conn.injected(upstream_op::connect, ec)) {
    auto [cec] = co_await conn.stream.sock.async_connect(b.endpoint, k_tuple);
    ec = cec;
  }
  conn.stream.settle(ec);
  c.st->upstream = nullptr;
  if (ec || c.st->client_gone) co_return ec;
  conn.stream.sock.set_option(tcp::no_delay(true));
  conn.stream.sock.non_blocking(true);
  readiness::watch_hangup(conn.stream.sock);
  co_return ec;
}

// Sends the request and reads the response header. A pooled connection the backend closed as we used
// it is not the replica's fault: the request goes once more on a fresh one. On `responded`, `conn`
// holds the connection with its parser past the header (and st->upstream points at it).
awaitable<attempt_result> server::impl::open_response(proxy_call& c, const lease& l,
                                                      std::unique_ptr<upstream_conn>& conn) {
  attempt_result out;
  // set_replica_url assigns this entry in place (posted to this thread), so the reference stays valid.
  const backend_addr& b = c.w.backends[l.replica];
  for (int fresh_try = 0;; ++fresh_try) {
    conn = fresh_try == 0 ? take_idle(c.w, l.replica) : nullptr;
    if (!conn) {
      conn = std::make_unique<upstream_conn>(c.w.ioc.get_executor());
      conn->faults = faults.get();
      auto ec = co_await connect(c, *conn, b);
      if (c.st->client_gone) co_return attempt_result{attempt_outcome::client_gone};
      if (ec) {
        out.failure = failure_kind::connect;
        out.why = "connect: " + ec.message();
        co_return out;
      }
    }
    c.st->upstream = conn.get();
    conn->begin_response();
    compose_request_head(*conn, c.req, b);
    // One deadline for the request's write, the response header and the first body bytes; settled
    // once the first body bytes are in (or the attempt fails).
    conn->stream.expires_after(std::chrono::milliseconds(cfg.limits.first_byte_timeout_ms));
    std::array<net::const_buffer, 2> bufs{net::buffer(conn->request_head), net::buffer(c.req.body())};
    boost::system::error_code wec;
    if (conn->injected(upstream_op::write, wec)) {
    } else if (std::size_t left = write_now(conn->stream.sock, bufs, wec); !wec && left > 0) {
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
        rec = conn->parser->got_some() || conn->buffer.size() > 0 ? http::error::partial_message
                                                                  : http::error::end_of_stream;
      if (rec) break;
      conn->buffer.commit(n);
      parse_head(*conn, rec);
    }
    if (wec)
      conn->stream.settle(wec);
    else if (rec)
      conn->stream.settle(rec);
    if (c.st->client_gone) {
      c.st->upstream = nullptr;
      co_return attempt_result{attempt_outcome::client_gone};
    }
    auto ec = wec ? wec : rec;
    if (ec && conn->reused && fresh_try == 0 && ec != beast::error::timeout) continue;
    if (ec) {
      c.st->upstream = nullptr;
      out.failure = ec == beast::error::timeout ? failure_kind::header_timeout : failure_kind::backend_error;
      out.why = out.failure == failure_kind::header_timeout
                    ? std::string("no response header within first_byte_timeout_ms")
                    : "backend: " + ec.message();
      co_return out;
    }
    out.outcome = attempt_outcome::responded;
    co_return out;
  }
}

}  // namespace agifarm::gateway
