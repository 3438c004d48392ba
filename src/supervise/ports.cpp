#include "supervise/ports.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace agifarm::supervise {
namespace {

// Binds host:port (IPv4 or IPv6 literal, or "localhost"); returns the bound port or -errno.
int try_bind(const std::string& host, int port) {
  std::string h = host == "localhost" || host.empty() ? "127.0.0.1" : host;
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    return -EINVAL;
  }
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as servers do: TIME_WAIT is no obstacle
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  sockaddr_storage got{};
  socklen_t glen = sizeof got;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &glen);
  ::close(fd);
  return family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&got)->sin_port)
                           : ntohs(reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
}

}  // namespace

result<int> real_ports::allocate(const std::string& host) {
  int p = try_bind(host, 0);
  if (p <= 0) return make_error(fmt::format("cannot allocate a port on {}: {}", host, std::strerror(-p)));
  return p;
}

bool real_ports::is_free(const std::string& host, int port) { return try_bind(host, port) == port; }

}  // namespace agifarm::supervise
