// fixture_backend: a minimal, fast OpenAI-style backend for gateway benchmarks and fault-injection
// tests. Answers POST /v1/* with a fixed chat.completion JSON, or (when the body asks for
// "stream": true) a fixed SSE stream of --chunks events ending in data: [DONE]; GET /health -> 200.
//
//   fixture_backend --port P [--threads N] [--chunks N] [--chunk-delay-ms D]
//                   [--mode ok|hang|status500|die_mid_stream|die_before_body] [--die-after N]
//
// hang: reads the request and never answers (a hung backend). status500: every POST gets 500.
// die_mid_stream: streams --die-after events, then resets the connection (SO_LINGER 0).
// die_before_body: sends a 200 header and resets before any body byte.
// Prints "listening on PORT" once bound. Not production code.
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
constexpr auto k_tuple = net::as_tuple(net::use_awaitable);

struct options {
  int port = 0;
  int threads = 1;
  int chunks = 8;
  int chunk_delay_ms = 0;
  int die_after = 3;
  std::string mode = "ok";
};

static std::string k_json_body =
    R"({"id":"chatcmpl-fixture","object":"chat.completion","created":0,"model":"fixture","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":"Hello from the fixture backend."},"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}})";

static std::string event(int i) {
  return "data: "
         "{\"id\":\"chatcmpl-fixture\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":"
         "\"fixture\","
         "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok" +
         std::to_string(i) + " \"},\"finish_reason\":null}]}\n\n";
}

static std::string chunk(const std::string& s) {
  char h[32];
  int n = std::snprintf(h, sizeof h, "%zx\r\n", s.size());
  return std::string(h, static_cast<std::size_t>(n)) + s + "\r\n";
}

static void reset(tcp::socket& s) {
  linger l{1, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  beast::error_code ec;
  s.close(ec);
}

static net::awaitable<void> session(tcp::socket sock, const options& o) {
  beast::flat_buffer buf;
  sock.set_option(tcp::no_delay(true));
  const std::string json_response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                                    std::to_string(k_json_body.size()) + "\r\n\r\n" + k_json_body;
  std::string sse_all;
  std::vector<std::string> sse_chunks;
  for (int i = 0; i < o.chunks; ++i) sse_chunks.push_back(chunk(event(i)));
  std::string usage_event =
      "data: {\"id\":\"chatcmpl-fixture\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
      "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":" +
      std::to_string(o.chunks) + "}}\n\n";
  std::string tail = chunk(usage_event) + chunk("data: [DONE]\n\n") + "0\r\n\r\n";
  const std::string sse_head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: "
      "chunked\r\n\r\n";
  for (auto& c : sse_chunks) sse_all += c;
  for (;;) {
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(sock, buf, req, k_tuple);
    if (ec) co_return;
    if (req.method() == http::verb::get) {
      std::string ok = R"({"status":"ok"})";
      std::string r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(ok.size()) + "\r\n\r\n" + ok;
      auto [wec, wn] = co_await net::async_write(sock, net::buffer(r), k_tuple);
      if (wec) co_return;
      continue;
    }
    if (o.mode == "hang") {
      net::steady_timer t(sock.get_executor(), std::chrono::hours(1));
      co_await t.async_wait(k_tuple);
      co_return;
    }
    if (o.mode == "status500") {
      std::string b = R"({"error":{"message":"fixture failure","type":"server_error","code":500}})";
      std::string r =
          "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: " +
          std::to_string(b.size()) + "\r\n\r\n" + b;
      auto [wec, wn] = co_await net::async_write(sock, net::buffer(r), k_tuple);
      if (wec) co_return;
      continue;
    }
    const std::string& body = req.body();
    bool stream = body.find("\"stream\":true") != std::string::npos ||
                  body.find("\"stream\": true") != std::string::npos;
    if (o.mode == "die_before_body") {
      co_await net::async_write(sock, net::buffer(sse_head), k_tuple);
      reset(sock);
      co_return;
    }
    if (!stream) {
      auto [wec, wn] = co_await net::async_write(sock, net::buffer(json_response), k_tuple);
      if (wec) co_return;
      continue;
    }
    if (o.chunk_delay_ms == 0 && o.mode == "ok") {
      std::array<net::const_buffer, 3> bufs{net::buffer(sse_head), net::buffer(sse_all), net::buffer(tail)};
      auto [wec, wn] = co_await net::async_write(sock, bufs, k_tuple);
      if (wec) co_return;
      continue;
    }
    auto [hec, hn] = co_await net::async_write(sock, net::buffer(sse_head), k_tuple);
    if (hec) co_return;
    net::steady_timer t(sock.get_executor());
    for (int i = 0; i < o.chunks; ++i) {
      if (o.mode == "die_mid_stream" && i == o.die_after) {
        reset(sock);
        co_return;
      }
      if (o.chunk_delay_ms > 0) {
        t.expires_after(std::chrono::milliseconds(o.chunk_delay_ms));
        co_await t.async_wait(k_tuple);
      }
      auto [wec, wn] =
          co_await net::async_write(sock, net::buffer(sse_chunks[static_cast<std::size_t>(i)]), k_tuple);
      if (wec) co_return;
    }
    auto [wec, wn] = co_await net::async_write(sock, net::buffer(tail), k_tuple);
    if (wec) co_return;
  }
}

static net::awaitable<void> accept_loop(tcp::acceptor& a, const options& o) {
  for (;;) {
    auto [ec, s] = co_await a.async_accept(k_tuple);
    if (ec) continue;
    net::co_spawn(a.get_executor(), session(std::move(s), o), net::detached);
  }
}

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port")
      o.port = std::atoi(v.c_str());
    else if (k == "--threads")
      o.threads = std::max(1, std::atoi(v.c_str()));
    else if (k == "--chunks")
      o.chunks = std::max(0, std::atoi(v.c_str()));
    else if (k == "--chunk-delay-ms")
      o.chunk_delay_ms = std::atoi(v.c_str());
    else if (k == "--die-after")
      o.die_after = std::atoi(v.c_str());
    else if (k == "--mode")
      o.mode = v;
    else {
      std::cerr << "fixture_backend: unknown option " << k << "\n";
      return 2;
    }
  }
  std::vector<std::unique_ptr<net::io_context>> ctxs;
  std::vector<std::unique_ptr<tcp::acceptor>> accs;
  int port = o.port;
  for (int i = 0; i < o.threads; ++i) {
    ctxs.push_back(std::make_unique<net::io_context>(1));
    auto a = std::make_unique<tcp::acceptor>(*ctxs.back());
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    a->open(ep.protocol());
    a->set_option(net::socket_base::reuse_address(true));
    a->set_option(net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
    a->bind(ep);
    a->listen();
    port = a->local_endpoint().port();
    net::co_spawn(*ctxs.back(), accept_loop(*a, o), net::detached);
    accs.push_back(std::move(a));
  }
  std::cout << "listening on " << port << std::endl;
  std::vector<std::thread> ts;
  for (int i = 1; i < o.threads; ++i) ts.emplace_back([&, i] { ctxs[static_cast<std::size_t>(i)]->run(); });
  ctxs[0]->run();
  for (auto& t : ts) t.join();
}
