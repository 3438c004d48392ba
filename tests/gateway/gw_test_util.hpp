// Helpers for the gateway's integration tests: blocking loopback HTTP with deadlines (raw sockets, so
// tests can send malformed bytes and disconnect mid-stream), fixture backends as real processes, and
// an in-process gateway::server. Test code only.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gateway/gateway.hpp"
#include "support/support.hpp"

namespace agifarm::gwtest {

using namespace std::chrono_literals;

inline int connect_loopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

inline bool send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads until the peer closes or `deadline` passes. closed: the peer closed (vs the deadline).
struct read_result {
  std::string data;
  bool closed = false;
};
inline read_result read_until_close(int fd, std::chrono::milliseconds timeout) {
  read_result r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return r;
    pollfd p{fd, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = true;
      return r;
    }
    r.data.append(buf, static_cast<std::size_t>(n));
  }
}

// Sends raw bytes (with Connection: close semantics expected) and returns everything until close.
inline read_result raw_exchange(int port, const std::string& bytes, std::chrono::milliseconds timeout = 10s) {
  int fd = connect_loopback(port);
  if (fd < 0) return {};
  send_all(fd, bytes);
  auto r = read_until_close(fd, timeout);
  ::close(fd);
  return r;
}

inline int status_of(const std::string& raw) {
  if (raw.size() < 12 || raw.compare(0, 5, "HTTP/") != 0) return 0;
  return std::atoi(raw.c_str() + 9);
}

inline std::string post(const std::string& target, const std::string& body,
                        const std::vector<std::string>& extra_headers = {}, bool close = true) {
  std::string s = "POST " + target +
                  " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n";
  for (const auto& h : extra_headers) s += h + "\r\n";
  if (close) s += "Connection: close\r\n";
  return s + "\r\n" + body;
}

// Decodes a chunked body (after the header) for assertions on SSE text.
inline std::string body_of(const std::string& raw) {
  auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return {};
  std::string head = raw.substr(0, end);
  std::string rest = raw.substr(end + 4);
  std::string lower;
  for (char c : head) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("transfer-encoding: chunked") == std::string::npos) return rest;
  std::string out;
  std::size_t i = 0;
  while (i < rest.size()) {
    auto nl = rest.find("\r\n", i);
    if (nl == std::string::npos) break;
    std::size_t n = std::stoul(rest.substr(i, nl - i), nullptr, 16);
    if (n == 0) break;
    out += rest.substr(nl + 2, n);
    i = nl + 2 + n + 2;
  }
  return out;
}

inline int count_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

inline std::string fixture_path() { return AGIFARM_FIXTURE_BACKEND; }

// A fixture backend process on a free port, ready (GET /health == 200) on return.
struct fixture {
  test::child proc;
  int port = 0;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};
inline fixture start_fixture(const std::vector<std::string>& args = {}, int port = 0) {
  fixture f;
  f.port = port ? port : test::free_port();
  std::vector<std::string> argv{fixture_path(), "--port", std::to_string(f.port)};
  argv.insert(argv.end(), args.begin(), args.end());
  f.proc = test::child(argv, test::temp_dir("fixture-" + std::to_string(f.port)) + "/log");
  test::wait_until([&] { return test::http_request(f.port, "GET", "/health", {}, {}, 2s).status == 200; },
                   20s);
  return f;
}

inline gateway::config base_config(const std::vector<std::string>& urls, int slots = 4) {
  gateway::config c;
  c.listen_host = "127.0.0.1";
  c.listen_port = 0;
  c.threads = 2;
  c.limits.retry_backoff_ms = 1;
  c.limits.health_interval_ms = 50;
  c.limits.first_byte_timeout_ms = 5000;
  c.limits.drain_timeout_ms = 2000;
  gateway::pool_config p;
  p.name = "tiny";
  p.aliases = {"fast"};
  p.slots_per_replica = slots;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    std::string name(1, 'r');  // not "r" + std::to_string(i): GCC 12 -Wrestrict false positive
    name += std::to_string(i);
    p.replicas.push_back({name, urls[i]});
  }
  c.pools.push_back(p);
  return c;
}

inline const std::string k_chat = R"({"model":"fast","messages":[{"role":"user","content":"hi"}]})";
inline const std::string k_chat_stream =
    R"({"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]})";

}  // namespace agifarm::gwtest
