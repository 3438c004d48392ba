// relay: the backend's response after its header: the first body bytes (still retryable), then the
// commit, and the body relayed to the client until its end or the backend's failure.
#include <fmt/format.h>

#include "gateway/server_impl.hpp"

namespace agifarm::gateway {

namespace {

// The end of an SSE stream whose backend died: a `data: {"error": ...}` event (after closing a
// half-written event) and the last chunk, replacing what `out` held.
void write_error_event(std::string& out, bool tail_ended_event, const std::string& replica,
                       const std::string& failure) {
  std::string frame_text = (tail_ended_event ? "" : "\n\n");
  std::string msg = fmt::format("backend '{}' failed mid-stream: {}", replica, failure);
  frame_text += "data: " + openai_error_body(msg, "server_error", "backend_disconnected") + "\n\n";
  out.clear();
  append_chunk(out, frame_text);
  out += "0\r\n\r\n"sv;
}

}  // namespace

// The last attempt relays whatever the backend says (a 5xx included): no retries left, or no other
// replica to retry on (asked only here: it takes the scheduler's lock).
bool server::impl::is_last_attempt(proxy_call& c, const lease& l, bool last_by_count) {
  if (last_by_count) return true;
  c.excluded.push_back(l.replica);
  bool untried = sched.has_untried(c.pool, c.excluded);
  c.excluded.pop_back();
  return !untried;
}

// The client went away mid-response: close the upstream at once so the backend stops generating.
attempt_result server::impl::client_left(proxy_call& c, upstream_conn& conn) {
  c.st->client_gone = true;
  c.st->upstream = nullptr;
  beast::error_code ignored;
  conn.stream.sock.close(ignored);
  c.usage_found = false;
  if (auto u = conn.scanner.finish()) c.usage = *u, c.usage_found = true;
  return attempt_result{attempt_outcome::client_gone};
}

// Mid-stream death: never replayed. SSE clients get a final error event and a clean end (no [DONE]);
// other bodies are cut (the client sees a truncated response). (Its own coroutine: it runs only when
// a backend fails, so the frame costs nothing per request.)
awaitable<attempt_result> server::impl::end_cut_response(proxy_call& c, const lease& l, upstream_conn& conn,
                                                         boost::system::error_code ec, response_shape shape,
                                                         bool keep_alive) {
  attempt_result out;
  out.outcome = attempt_outcome::cut_mid_response;
  out.failure = ec == beast::error::timeout ? failure_kind::stream_silent : failure_kind::backend_error;
  out.why = out.failure == failure_kind::stream_silent ? std::string("backend went silent mid-response")
                                                       : ec.message();
  out.keep_alive = false;
  if (shape.sse && shape.chunked && shape.http11) {
    write_error_event(conn.out, conn.sse_tail.empty(), sched.replica_name(l.replica), out.why);
    c.client.expires_after(std::chrono::milliseconds(cfg.limits.stream_idle_timeout_ms));
    auto [fec, fn] = co_await net::async_write(c.client.sock, net::buffer(conn.out), k_tuple);
    (void)fn;
    c.client.settle(fec);
    out.keep_alive = keep_alive && !fec;
  }
  co_return out;
}

// Reason for the length: one coroutine from the first body byte to the response's end, because each
// coroutine called per request costs a frame and a resumption (the per-request instruction budget of
// bench/gateway/instructions.sh); the parts that need no co_await are functions of upstream_conn.
awaitable<attempt_result> server::impl::relay(proxy_call& c, const lease& l, bool last_by_count,
                                              std::unique_ptr<upstream_conn>& conn) {
  attempt_result out;
  auto& parser = *conn->parser;
  const int status = static_cast<int>(parser.get().result_int());
  if (status >= 500 && !is_last_attempt(c, l, last_by_count)) {
    c.st->upstream = nullptr;
    out.failure = failure_kind::backend_5xx;
    out.why = fmt::format("backend answered HTTP {}", status);
    co_return out;  // conn dropped (closed by its destructor)
  }
  // First body bytes (still under the first-byte deadline), so a backend that dies before producing
  // anything is retried rather than committed.
  boost::system::error_code ec;
  conn->got = 0;
  while (!parser.is_done() && conn->got == 0) {
    conn->prepare_read();
    if (conn->buffer.size() > 0) {  // the header's read usually brought body bytes too
      ec = conn->after_read({});
      if (ec || conn->got > 0 || parser.is_done()) break;
    }
    boost::system::error_code rec;
    std::size_t rn = 0;
    if (!conn->read_now(rec, rn)) std::tie(rec, rn) = conn->waited(co_await conn->wait_read());
    ec = conn->after_read(conn->commit_read(rec, rn));
    if (ec || c.st->client_gone) break;
  }
  if (c.st->client_gone) {
    c.st->upstream = nullptr;
    co_return attempt_result{attempt_outcome::client_gone};
  }
  if (ec) {
    c.st->upstream = nullptr;
    out.failure =
        ec == beast::error::timeout ? failure_kind::first_byte_timeout : failure_kind::backend_error;
    out.why = out.failure == failure_kind::first_byte_timeout
                  ? std::string("no first byte within first_byte_timeout_ms")
                  : "backend: " + ec.message();
    co_return out;
  }

  // ---- committed: from here the response belongs to this replica --------------------------------
  c.status = status;
  const response_shape shape = start_response(*conn, status, c.req.version() >= 11, c.keep && !stopping);
  bool keep_alive = shape.keep_alive;
  std::string& out_buf = conn->out;  // bytes to write to the client this round
  conn->take(std::string_view(conn->relay.get(), conn->got));
  c.ttfb_s = std::chrono::duration<double>(clock_type::now() - c.started).count();
  auto idle = std::chrono::milliseconds(cfg.limits.stream_idle_timeout_ms);
  timed_socket& client = c.client;
  for (;;) {
    // One write site for the body and its end: the final round adds the rest of the body and the
    // last chunk, and no longer watches for the client (nothing left to stop upstream).
    const bool done = parser.is_done();
    if (done) {
      c.st->upstream = nullptr;
      conn->flush_tail();
      if (shape.chunked && shape.http11) out_buf += "0\r\n\r\n"sv;
    }
    if (!out_buf.empty()) {
      boost::system::error_code wec;
      if (std::size_t left = write_now(client.sock, net::buffer(out_buf), wec); !wec && left > 0) {
        client.expires_after(idle);
        auto [ec3, wn] = co_await net::async_write(
            client.sock, net::buffer(out_buf.data() + out_buf.size() - left, left), k_tuple);
        (void)wn;
        client.settle(ec3);
        wec = ec3;
      }
      out_buf.clear();
      if (done) {
        if (wec) keep_alive = false;
      } else if (wec || c.st->client_gone) {
        co_return client_left(c, *conn);
      }
    }
    if (done) break;
    conn->prepare_read();
    conn->got = 0;
    ec = {};
    if (conn->buffer.size() > 0) ec = conn->after_read({});  // left over when the relay buffer filled up
    if (!ec && conn->got == 0 && !parser.is_done()) {
      conn->stream.expires_after(idle);
      boost::system::error_code rec;
      std::size_t rn = 0;
      if (!conn->read_now(rec, rn)) std::tie(rec, rn) = conn->waited(co_await conn->wait_read());
      ec = conn->after_read(conn->commit_read(rec, rn));
    }
    if (c.st->client_gone) {
      c.st->upstream = nullptr;
      co_return attempt_result{attempt_outcome::client_gone};
    }
    if (ec) break;
    conn->take(std::string_view(conn->relay.get(), conn->got));
  }
  c.st->upstream = nullptr;
  if (auto u = conn->scanner.finish()) {
    c.usage = *u;
    c.usage_found = true;
  }
  if (ec) co_return co_await end_cut_response(c, l, *conn, ec, shape, keep_alive);
  if (parser.get().keep_alive() && conn->buffer.size() == 0) put_idle(c.w, l.replica, std::move(conn));
  out.outcome = attempt_outcome::completed;
  out.keep_alive = keep_alive && (!shape.chunked || shape.http11);
  co_return out;
}

}  // namespace agifarm::gateway
