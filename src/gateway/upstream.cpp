#include "gateway/upstream.hpp"

#include <fmt/format.h>

#include "gateway/config.hpp"

namespace agifarm::gateway {

result<backend_addr> resolve_backend(const std::string& name, const std::string& url,
                                     const std::string& key) {
  auto hp = parse_http_url(url);
  if (!hp) return make_error(fmt::format("replica '{}': {}", name, hp.err().message));
  std::string host = hp->host == "localhost" ? "127.0.0.1" : hp->host;
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec)
    return make_error(fmt::format("replica '{}': host '{}' is not a numeric IP address", name, hp->host));
  std::string host_header =
      addr.is_v6() ? fmt::format("[{}]:{}", host, hp->port) : fmt::format("{}:{}", host, hp->port);
  return backend_addr{tcp::endpoint(addr, static_cast<unsigned short>(hp->port)), host_header,
                      key.empty() ? std::string() : "\r\nAuthorization: Bearer " + key};
}

response_shape start_response(upstream_conn& conn, int status, bool http11, bool client_keep_alive) {
  auto& res = conn.parser->get();
  std::string_view content_type = header_value(res, http::field::content_type);
  if (content_type.empty()) content_type = "application/json";
  response_shape r;
  r.sse = content_type.find("text/event-stream") != std::string::npos;
  const auto content_length = conn.parser->content_length();
  r.chunked = !content_length.has_value();
  r.http11 = http11;
  r.keep_alive = client_keep_alive && (!r.chunked || http11);
  conn.scanner.reset(r.sse);
  conn.sse = r.sse;
  conn.chunked_out = r.chunked && http11;
  conn.sse_tail.clear();
  std::string& out = conn.out;
  out.clear();
  out.append("HTTP/1.1 "sv);
  append_decimal(out, static_cast<std::uint64_t>(status));
  out.append(" "sv)
      .append(reason(status))
      .append("\r\nServer: agifarm\r\nContent-Type: "sv)
      .append(content_type);
  out.append("\r\n"sv);
  if (content_length) {
    out.append("Content-Length: "sv);
    append_decimal(out, *content_length);
    out.append("\r\n"sv);
  } else if (http11) {
    out += "Transfer-Encoding: chunked\r\n"sv;
  }
  if (r.sse) out += "Cache-Control: no-cache\r\n"sv;
  if (!r.keep_alive) out += "Connection: close\r\n"sv;
  out += "\r\n"sv;
  return r;
}

}  // namespace agifarm::gateway
