// Failure injection on the gateway's upstream path, in the style of Beast's fail_count: for N = 1, 2,
// ... the Nth upstream operation (connect, write or read towards a backend) fails, and the client
// must get the right answer for where that was (502/504 naming the failure before the first byte, a
// cut body or an SSE error event after it, a clean retry when another replica is left), without a
// hang, a lease left outstanding or a socket left open. A real server on loopback, with in-process
// backends (threads with blocking sockets) so the test needs no other program.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/beast/core/error.hpp>
#include <mutex>
#include <thread>

#include "gateway/testing.hpp"
#include "gw_test_util.hpp"

using namespace agifarm;
using namespace agifarm::gwtest;

namespace {

const std::string k_reply =
    R"({"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"}}],)"
    R"("usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}})";
const char* const k_events[] = {
    "data: {\"choices\":[{\"delta\":{\"content\":\"he\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
    "data: [DONE]\n\n",
};

// A loopback backend: POST answers k_reply (Content-Length; head and body in separate writes), or with
// "stream":true in the body the k_events as SSE chunks, each its own write a millisecond apart. It
// closes the connection after each response (so every attempt connects afresh and the operations a
// request makes are the same each time) unless `keep_alive`.
class tiny_backend {
 public:
  explicit tiny_backend(bool keep_alive = false) : keep_alive_(keep_alive) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 64) != 0)
      throw std::runtime_error("bind");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~tiny_backend() {
    stop_ = true;
    accept_thread_.join();
    std::lock_guard lk(mu_);
    for (auto& t : conns_) t.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::lock_guard lk(mu_);
      conns_.emplace_back([this, c] { serve(c); });
    }
  }
  // Reads one request (head and Content-Length body); false at EOF, error or stop.
  bool read_request(int c, std::string& buf, std::string& body) {
    char tmp[4096];
    for (;;) {
      auto end = buf.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::size_t len = 0;
        auto cl = buf.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) len = std::stoul(buf.substr(cl + 16));
        if (buf.size() >= end + 4 + len) {
          body = buf.substr(end + 4, len);
          buf.erase(0, end + 4 + len);
          return true;
        }
      }
      pollfd p{c, POLLIN, 0};
      if (stop_) return false;
      if (::poll(&p, 1, 20) <= 0) continue;
      ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
  }
  void serve(int c) {
    std::string buf, body;
    const std::string conn = keep_alive_ ? "" : "Connection: close\r\n";
    while (read_request(c, buf, body)) {
      if (body.find("\"stream\":true") == std::string::npos) {
        send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                        std::to_string(k_reply.size()) + "\r\n" + conn + "\r\n");
        std::this_thread::sleep_for(1ms);
        send_all(c, k_reply);
      } else {
        send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n" +
                        conn + "\r\n");
        for (const char* e : k_events) {
          std::this_thread::sleep_for(1ms);
          std::string ev(e);
          char size[16];
          std::snprintf(size, sizeof size, "%zx\r\n", ev.size());
          send_all(c, size + ev + "\r\n");
        }
        send_all(c, "0\r\n\r\n");
      }
      if (!keep_alive_) break;
    }
    ::shutdown(c, SHUT_RDWR);
    ::close(c);
  }

  bool keep_alive_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
};

gateway::config fault_config(const std::vector<std::string>& urls, int retries) {
  auto c = base_config(urls);
  c.threads = 1;
  c.limits.retries = retries;
  c.limits.eject_after_failures = 1000;  // injected failures must not take replicas out of rotation
  return c;
}

// Waits until no replica has a request outstanding and no client connection is open.
bool settled(const gateway::server& srv) {
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = srv.stats();
    bool idle = s.open_connections == 0;
    for (const auto& r : s.replicas) idle = idle && r.outstanding == 0;
    if (idle) return true;
    std::this_thread::sleep_for(2ms);
  }
  return false;
}

std::size_t content_length_of(const std::string& raw) {
  auto p = raw.find("Content-Length: ");
  return p == std::string::npos ? 0 : std::stoul(raw.substr(p + 16));
}

std::string expected_why(gateway::upstream_op op, const boost::system::error_code& ec) {
  return (op == gateway::upstream_op::connect ? "connect: " : "backend: ") + ec.message();
}

// Runs the fail_count loop over one request body; `check` asserts on each injected run. Returns how
// many runs had a failure injected.
template <class Check>
int fail_count_loop(gateway::server& srv, const std::string& body, Check check,
                    boost::system::error_code error = boost::asio::error::connection_reset) {
  int injected = 0;
  for (std::size_t n = 1; n <= 64; ++n) {
    auto f = std::make_shared<gateway::fail_count>(n, error);
    gateway::inject_upstream_failures(srv, f);
    auto r = raw_exchange(srv.port(), post("/v1/chat/completions", body), 5s);
    EXPECT_TRUE(r.closed) << "N=" << n << ": the client got no end of the response within 5 s";
    EXPECT_TRUE(settled(srv)) << "N=" << n << ": a lease or a client connection is left over";
    if (!f->fired()) {
      EXPECT_EQ(status_of(r.data), 200) << "N=" << n << "\n" << r.data;
      EXPECT_GE(n, 3u) << "a request makes at least a connect, a write and a read";
      gateway::inject_upstream_failures(srv, nullptr);
      return injected;
    }
    ++injected;
    check(n, *f, r.data);
  }
  ADD_FAILURE() << "the 64th upstream operation still came";
  return injected;
}

}  // namespace

TEST(gateway_upstream_faults, nth_operation_fails_without_retries_json) {
  tiny_backend be;
  gateway::server srv(fault_config({be.url()}, 0));
  int fds_before = count_fds();
  ASSERT_TRUE(srv.start().ok());
  int cut = 0, refused = 0;
  int runs =
      fail_count_loop(srv, k_chat, [&](std::size_t n, const gateway::fail_count& f, const std::string& raw) {
        int status = status_of(raw);
        if (status == 502) {  // before the first byte: the one attempt failed, and the reply names why
          ++refused;
          EXPECT_NE(raw.find("failed before the first byte; last: " +
                             expected_why(f.failed_op(), boost::asio::error::connection_reset)),
                    std::string::npos)
              << "N=" << n << "\n"
              << raw;
          EXPECT_NE(raw.find("backend_unavailable"), std::string::npos);
        } else {  // after the commit: the body is cut short and the connection closed
          ++cut;
          EXPECT_EQ(status, 200) << "N=" << n << "\n" << raw;
          EXPECT_EQ(f.failed_op(), gateway::upstream_op::read) << "N=" << n;
          EXPECT_LT(body_of(raw).size(), content_length_of(raw)) << "N=" << n;
        }
      });
  EXPECT_EQ(refused, runs - cut);
  EXPECT_GE(refused, 3);  // connect, write and the header's read
  srv.stop();
  // The backend closes its side of each connection on its own thread: give it a moment.
  EXPECT_TRUE(test::wait_until([&] { return count_fds() == fds_before; }, 2s))
      << "sockets left open: " << count_fds() << " fds, " << fds_before << " before the server started";
}

TEST(gateway_upstream_faults, nth_operation_fails_mid_stream_gives_an_error_event) {
  tiny_backend be;
  gateway::server srv(fault_config({be.url()}, 0));
  ASSERT_TRUE(srv.start().ok());
  int events = 0;
  fail_count_loop(
      srv, k_chat_stream, [&](std::size_t n, const gateway::fail_count& f, const std::string& raw) {
        int status = status_of(raw);
        if (status == 502) {
          EXPECT_NE(raw.find(expected_why(f.failed_op(), boost::asio::error::connection_reset)),
                    std::string::npos)
              << raw;
          return;
        }
        ASSERT_EQ(status, 200) << "N=" << n << "\n" << raw;
        // Committed, then cut: the last event is an SSE error event (whatever the backend had sent before,
        // [DONE] included when only its last chunk was missing), and the chunked body ends cleanly.
        ++events;
        std::string body = body_of(raw);
        auto last = body.rfind("data: ");
        ASSERT_NE(last, std::string::npos) << "N=" << n << "\n" << body;
        EXPECT_NE(body.find("failed mid-stream", last), std::string::npos) << "N=" << n << "\n" << body;
        EXPECT_NE(body.find("backend_disconnected", last), std::string::npos);
        EXPECT_NE(raw.find("\r\n0\r\n\r\n"), std::string::npos) << "the chunked body must end cleanly";
      });
  EXPECT_GE(events, 1);  // the events come in several reads, so some failure lands mid-stream
  srv.stop();
}

TEST(gateway_upstream_faults, a_failure_before_the_first_byte_is_retried_on_the_other_replica) {
  tiny_backend a, b;
  gateway::server srv(fault_config({a.url(), b.url()}, 1));
  ASSERT_TRUE(srv.start().ok());
  int retried = 0;
  fail_count_loop(srv, k_chat, [&](std::size_t n, const gateway::fail_count&, const std::string& raw) {
    ASSERT_EQ(status_of(raw), 200) << "N=" << n << "\n" << raw;
    if (body_of(raw).size() == content_length_of(raw)) {
      ++retried;  // the whole reply: the failure came before the commit and the other replica answered
      EXPECT_NE(raw.find("\"content\":\"hello\""), std::string::npos);
    }
  });
  EXPECT_GE(retried, 3);
  auto metrics = test::http_request(srv.port(), "GET", "/metrics", {}, {}, 2s);
  EXPECT_NE(metrics.body.find("agifarm_gateway_retries_total{pool=\"tiny\"} " + std::to_string(retried)),
            std::string::npos)
      << metrics.body;
  srv.stop();
}

TEST(gateway_upstream_faults, an_injected_timeout_before_the_header_is_a_504) {
  tiny_backend be;
  gateway::server srv(fault_config({be.url()}, 0));
  ASSERT_TRUE(srv.start().ok());
  auto f = std::make_shared<gateway::fail_count>(3, boost::beast::error::timeout);  // connect, write, read
  gateway::inject_upstream_failures(srv, f);
  auto r = raw_exchange(srv.port(), post("/v1/chat/completions", k_chat), 5s);
  ASSERT_TRUE(f->fired());
  EXPECT_EQ(f->failed_op(), gateway::upstream_op::read);
  EXPECT_EQ(status_of(r.data), 504) << r.data;
  EXPECT_NE(r.data.find("no response header within first_byte_timeout_ms"), std::string::npos) << r.data;
  EXPECT_TRUE(settled(srv));
  srv.stop();
}

TEST(gateway_upstream_faults, a_pooled_connection_that_fails_is_replaced_by_a_fresh_one) {
  tiny_backend be(/*keep_alive=*/true);
  gateway::server srv(fault_config({be.url()}, 0));
  ASSERT_TRUE(srv.start().ok());
  // Warm the pool: the first request leaves its upstream connection idle in the pool.
  auto warm = raw_exchange(srv.port(), post("/v1/chat/completions", k_chat), 5s);
  ASSERT_EQ(status_of(warm.data), 200) << warm.data;
  // The next request's first upstream operation is the pooled connection's write: it fails, and the
  // request goes once more on a fresh connection (no retry counted, no failure against the replica).
  auto f = std::make_shared<gateway::fail_count>(1);
  gateway::inject_upstream_failures(srv, f);
  auto r = raw_exchange(srv.port(), post("/v1/chat/completions", k_chat), 5s);
  ASSERT_TRUE(f->fired());
  EXPECT_EQ(f->failed_op(), gateway::upstream_op::write);
  EXPECT_EQ(status_of(r.data), 200) << r.data;
  EXPECT_EQ(body_of(r.data), k_reply);
  EXPECT_TRUE(settled(srv));
  auto metrics = test::http_request(srv.port(), "GET", "/metrics", {}, {}, 2s);
  EXPECT_EQ(metrics.body.find("agifarm_gateway_retries_total{pool=\"tiny\"} 1"), std::string::npos);
  srv.stop();
}
