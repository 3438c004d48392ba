#include "bench/client.hpp"

#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <charconv>

#include "bench/sse.hpp"

namespace agifarm::bench {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::string endpoint::url() const { return fmt::format("http://{}:{}", host, port); }

result<endpoint> parse_url(std::string_view url) {
  auto bad = [&](std::string_view why) { return make_error(fmt::format("--url '{}': {}", url, why), 2); };
  constexpr std::string_view k_http = "http://";
  if (url.substr(0, k_http.size()) != k_http) {
    if (url.find("://") != std::string_view::npos) return bad("only http:// is supported");
    return bad("expected http://HOST:PORT");
  }
  std::string_view rest = url.substr(k_http.size());
  auto slash = rest.find('/');
  std::string_view hostport = rest.substr(0, slash),
                   path = slash == std::string_view::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (!path.empty() && path != "/v1")
    return bad(
        fmt::format("unexpected path '{}' (give the farm's address, e.g. http://127.0.0.1:8080)", path));
  endpoint ep;
  ep.port = 80;
  if (!hostport.empty() && hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string_view::npos) return bad("unclosed '[' in the address");
    ep.host = std::string(hostport.substr(1, close - 1));
    hostport.remove_prefix(close + 1);
    if (!hostport.empty() && hostport.front() != ':') return bad("expected ':' after ']'");
  } else {
    auto colon = hostport.rfind(':');
    ep.host = std::string(hostport.substr(0, colon));
    hostport = colon == std::string_view::npos ? "" : hostport.substr(colon);
  }
  if (ep.host.empty()) return bad("no host");
  if (!hostport.empty()) {
    auto p = hostport.substr(1);
    int port = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc{} || ptr != p.data() + p.size() || port < 1 || port > 65535)
      return bad(fmt::format("bad port '{}'", p));
    ep.port = port;
  }
  return ep;
}

namespace {

template <class Req>
void common_headers(Req& req, const endpoint& ep) {
  req.set(http::field::host, fmt::format("{}:{}", ep.host, ep.port));
  req.set(http::field::user_agent, "agifarm-bench");
  if (!ep.api_key.empty()) req.set(http::field::authorization, "Bearer " + ep.api_key);
}

}  // namespace

result<http_reply> http_get(const endpoint& ep, const std::string& target,
                            std::chrono::milliseconds timeout) {
  net::io_context io;
  beast::tcp_stream stream(io);
  tcp::resolver resolver(io);
  beast::error_code ec;
  auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
  if (ec)
    return make_error(fmt::format("cannot reach {}: resolving {}: {}", ep.url(), ep.host, ec.message()), 1);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  common_headers(req, ep);
  http::response<http::string_body> res;
  beast::flat_buffer buf;
  std::string where;
  stream.expires_after(timeout);
  stream.async_connect(results, [&](beast::error_code e, const tcp::endpoint&) {
    if (e) {
      ec = e;
      where = "connecting";
      return;
    }
    http::async_write(stream, req, [&](beast::error_code e2, std::size_t) {
      if (e2) {
        ec = e2;
        where = "sending";
        return;
      }
      http::async_read(stream, buf, res, [&](beast::error_code e3, std::size_t) {
        if (e3) {
          ec = e3;
          where = "reading the answer";
        }
      });
    });
  });
  io.run();
  if (ec)
    return make_error(fmt::format("cannot reach {}: {} ({} {})", ep.url(), ec.message(), where, target), 1);
  return http_reply{static_cast<int>(res.result_int()), std::move(res.body())};
}

net::awaitable<request_record> stream_chat(const endpoint& ep, const request_spec& spec,
                                           clock_type::time_point t0, std::chrono::milliseconds timeout,
                                           std::string* reply_text, std::size_t max_reply_bytes) {
  constexpr auto k_tuple = net::as_tuple(net::use_awaitable);
  auto secs = [&](clock_type::time_point t) { return std::chrono::duration<double>(t - t0).count(); };
  request_record r;
  r.model = spec.model;
  r.kind = spec.kind;
  auto start = clock_type::now();
  r.start_s = secs(start);
  auto fail = [&](std::string kind, std::string detail) {
    r.ok = false;
    r.error = std::move(kind);
    r.error_detail = std::move(detail);
    r.end_s = secs(clock_type::now());
  };
  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(ep.host, std::to_string(ep.port), k_tuple);
  if (rec) {
    fail("connect", rec.message());
    co_return r;
  }
  beast::tcp_stream stream(ex);
  stream.expires_after(timeout);
  auto is_timeout = [](const beast::error_code& e) { return e == beast::error::timeout; };
  auto [cec, cep] = co_await stream.async_connect(results, k_tuple);
  if (cec) {
    fail(is_timeout(cec) ? "timeout" : "connect", cec.message());
    co_return r;
  }
  http::request<http::string_body> req{http::verb::post, "/v1/chat/completions", 11};
  common_headers(req, ep);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "text/event-stream");
  req.body() = spec.body;
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, req, k_tuple);
  if (wec) {
    fail(is_timeout(wec) ? "timeout" : "connect", "sending: " + wec.message());
    co_return r;
  }
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [hec, hn] = co_await http::async_read_header(stream, buf, parser, k_tuple);
  if (hec) {
    fail(is_timeout(hec) ? "timeout" : "stream", "reading the header: " + hec.message());
    co_return r;
  }
  int status = static_cast<int>(parser.get().result_int());
  sse_parser sse;
  std::vector<std::string> events;
  std::string error_body;
  bool done = false, backend_error = false;
  std::string backend_detail;
  clock_type::time_point last_text{};
  bool any_text = false;
  auto on_events = [&](clock_type::time_point now) {
    for (auto& e : events) {
      auto c = parse_chunk(e);
      if (c.done) done = true;
      if (c.error) {
        backend_error = true;
        backend_detail = *c.error;
      }
      if (c.has_text) {
        ++r.chunks;
        if (!any_text)
          r.ttft_s = std::chrono::duration<double>(now - start).count();
        else
          r.itl_s.push_back(std::chrono::duration<double>(now - last_text).count());
        any_text = true;
        last_text = now;
        if (reply_text && reply_text->size() < max_reply_bytes) {
          // the text itself, for the chat history
          boost::system::error_code jec;
          auto v = boost::json::parse(e, jec);
          if (!jec && v.is_object())
            if (auto* ch = v.get_object().if_contains("choices"); ch && ch->is_array())
              for (auto& x : ch->get_array())
                if (auto* d = x.is_object() ? x.get_object().if_contains("delta") : nullptr;
                    d && d->is_object())
                  if (auto* t = d->get_object().if_contains("content"); t && t->is_string())
                    reply_text->append(t->get_string().data(), t->get_string().size());
        }
      }
      if (c.prompt_tokens) r.prompt_tokens = *c.prompt_tokens;
      if (c.completion_tokens) r.completion_tokens = *c.completion_tokens;
    }
    events.clear();
  };
  std::array<char, 16384> tmp;
  while (!parser.is_done()) {
    parser.get().body().data = tmp.data();
    parser.get().body().size = tmp.size();
    // read_some, not read: each chunk is timed as it arrives (read would wait to fill the buffer)
    auto [ec, n] = co_await http::async_read_some(stream, buf, parser, k_tuple);
    if (ec == http::error::need_buffer) ec = {};
    std::size_t got = tmp.size() - parser.get().body().size;
    auto now = clock_type::now();
    if (got > 0) {
      if (status != 200) {
        if (error_body.size() < 2048) error_body.append(tmp.data(), std::min(got, 2048 - error_body.size()));
      } else if (!sse.feed(std::string_view(tmp.data(), got), events)) {
        fail("stream", "an event line over the size limit");
        co_return r;
      }
      on_events(now);
    }
    if (ec) {
      fail(is_timeout(ec) ? "timeout" : "stream", "reading the stream: " + ec.message());
      co_return r;
    }
  }
  auto now = clock_type::now();
  sse.finish(events);
  on_events(now);
  r.end_s = secs(now);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  if (status != 200) {
    fail(fmt::format("http_{}", status), error_body);
    co_return r;
  }
  if (backend_error) {
    fail("backend", backend_detail);
    co_return r;
  }
  if (!done) {
    fail("stream", "the stream ended without [DONE]");
    co_return r;
  }
  r.ok = true;
  co_return r;
}

}  // namespace agifarm::bench
