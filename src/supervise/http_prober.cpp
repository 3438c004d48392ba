#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <thread>

#include "supervise/prober.hpp"

namespace agifarm::supervise {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string to_string(probe_outcome o) {
  switch (o) {
    case probe_outcome::ok:
      return "ok";
    case probe_outcome::loading:
      return "loading";
    case probe_outcome::refused:
      return "refused";
    case probe_outcome::timeout:
      return "timeout";
    case probe_outcome::busy:
      return "busy";
    case probe_outcome::error:
      return "error";
  }
  return "?";
}
std::string to_string(probe_kind k) {
  switch (k) {
    case probe_kind::health:
      return "health";
    case probe_kind::completion:
      return "completion";
    case probe_kind::tcp:
      return "tcp";
  }
  return "?";
}

namespace {

struct exchange_result {
  probe_outcome outcome = probe_outcome::error;
  int status = 0;
  std::string body;
  std::string detail;
};

// One HTTP/1.1 exchange (or a bare connect) with a deadline covering connect, write and read.
asio::awaitable<exchange_result> exchange(std::string host, int port, http::verb verb, std::string target,
                                          std::string body, bool connect_only, duration timeout,
                                          std::string api_key = {}) {
  exchange_result out;
  auto ex = co_await asio::this_coro::executor;
  beast::tcp_stream stream(ex);
  stream.expires_after(timeout);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    out.detail = "bad address " + host;
    co_return out;
  }
  auto token = asio::as_tuple(asio::use_awaitable);
  auto [cec] = co_await stream.async_connect(tcp::endpoint(addr, static_cast<unsigned short>(port)), token);
  if (cec) {
    out.outcome = cec == beast::error::timeout             ? probe_outcome::timeout
                  : cec == asio::error::connection_refused ? probe_outcome::refused
                                                           : probe_outcome::error;
    out.detail = cec == beast::error::timeout ? "connect timed out" : cec.message();
    co_return out;
  }
  if (connect_only) {
    out.outcome = probe_outcome::ok;
    co_return out;
  }
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, fmt::format("{}:{}", host, port));
  req.set(http::field::user_agent, "agifarm-supervisor");
  if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, req, token);
  (void)wn;
  if (wec) {
    out.outcome = wec == beast::error::timeout ? probe_outcome::timeout : probe_outcome::error;
    out.detail = wec == beast::error::timeout ? "timed out sending" : wec.message();
    co_return out;
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(4u << 20);
  auto [rec, rn] = co_await http::async_read(stream, buf, parser, token);
  (void)rn;
  if (rec) {
    out.outcome = rec == beast::error::timeout ? probe_outcome::timeout : probe_outcome::error;
    out.detail = rec == beast::error::timeout ? "no answer within the deadline" : rec.message();
    co_return out;
  }
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  out.outcome = out.status == 200   ? probe_outcome::ok
                : out.status == 503 ? probe_outcome::loading
                                    : probe_outcome::error;
  out.detail = fmt::format("HTTP {}", out.status);
  beast::error_code sec;
  stream.socket().shutdown(tcp::socket::shutdown_both, sec);
  co_return out;
}

}  // namespace

struct http_prober::impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::mutex mu;
  std::vector<probe_result> done;
  std::function<void()> on_result;
  std::thread thread;
};

http_prober::http_prober(std::function<void()> on_result) : impl_(std::make_unique<impl>()) {
  impl_->on_result = std::move(on_result);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

http_prober::~http_prober() {
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void http_prober::start(const probe_request& r) {
  impl* p = impl_.get();
  asio::co_spawn(
      p->io,
      [p, r]() -> asio::awaitable<void> {
        http::verb verb = http::verb::get;
        std::string target = "/health", body;
        if (r.kind == probe_kind::completion) {
          verb = http::verb::post;
          target = "/completion";
          body = R"({"prompt":"Hi","n_predict":1,"cache_prompt":false})";
        }
        auto x = co_await exchange(r.host, r.port, verb, target, body, r.kind == probe_kind::tcp, r.timeout,
                                   r.api_key);
        if (r.kind == probe_kind::completion && x.outcome == probe_outcome::timeout) {
          auto s =
              co_await exchange(r.host, r.port, http::verb::get, "/slots", "", false, r.timeout, r.api_key);
          if (s.status == 200) {
            x.outcome = probe_outcome::busy;
            x.detail = "completion slow but /slots answers (busy)";
          }
        }
        probe_result res{r.backend, r.kind, x.outcome, x.status, x.detail, r.tag};
        {
          std::lock_guard lk(p->mu);
          p->done.push_back(std::move(res));
        }
        if (p->on_result) p->on_result();
      },
      asio::detached);
}

std::vector<probe_result> http_prober::poll() {
  std::lock_guard lk(impl_->mu);
  return std::exchange(impl_->done, {});
}

http_answer http_get(const std::string& host, int port, const std::string& target, duration timeout) {
  asio::io_context io;
  http_answer ans;
  asio::co_spawn(io, exchange(host, port, http::verb::get, target, "", false, timeout),
                 [&](const std::exception_ptr& e, exchange_result x) {
                   if (e) {
                     ans.error = "exception";
                     return;
                   }
                   ans.status = x.status;
                   ans.body = std::move(x.body);
                   if (x.status == 0) ans.error = x.detail;
                 });
  io.run();
  return ans;
}

http_answer http_post(const std::string& host, int port, const std::string& target,
                      const std::string& json_body, duration timeout) {
  asio::io_context io;
  http_answer ans;
  asio::co_spawn(io, exchange(host, port, http::verb::post, target, json_body, false, timeout),
                 [&](const std::exception_ptr& e, exchange_result x) {
                   if (e) {
                     ans.error = "exception";
                     return;
                   }
                   ans.status = x.status;
                   ans.body = std::move(x.body);
                   if (x.status == 0) ans.error = x.detail;
                 });
  io.run();
  return ans;
}

}  // namespace agifarm::supervise
