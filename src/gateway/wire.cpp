#include "gateway/wire.hpp"

#include <fmt/format.h>

namespace agifarm::gateway {

std::string response_head(int status, std::string_view content_type, std::size_t length, bool keep_alive,
                          std::string_view extra) {
  return fmt::format(
      "HTTP/1.1 {} {}\r\nServer: agifarm\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
      reason(status), content_type, length, keep_alive ? "" : "Connection: close\r\n", extra);
}

}  // namespace agifarm::gateway
