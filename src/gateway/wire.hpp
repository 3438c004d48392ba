// wire: the gateway server's shared types (the io_context's concrete executor, sockets, the request
// type) and the small HTTP helpers every part of the request path uses (reason phrases, header
// lookup, writes that finish at once when they can, chunk framing). Internal to src/gateway.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <string>
#include <string_view>

#include "gateway/recycling_allocator.hpp"

namespace agifarm::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using namespace std::string_view_literals;  // appends of literals without a strlen() each
using clock_type = std::chrono::steady_clock;
// The io_context's concrete executor type everywhere, not any_io_executor (no type-erased executor
// copies per operation).
using executor_type = net::io_context::executor_type;
using socket_type = net::basic_stream_socket<tcp, executor_type>;
using acceptor_type = net::basic_socket_acceptor<tcp, executor_type>;
using timer_type = net::basic_waitable_timer<clock_type, net::wait_traits<clock_type>, executor_type>;
template <class T>
using awaitable = net::awaitable<T, executor_type>;
// Requests (header fields and body) and backend responses (header fields) live in recycled blocks
// (recycling_allocator.hpp).
using field_allocator = agifarm::gateway::recycling_allocator<char>;
using client_body = http::basic_string_body<char, std::char_traits<char>, field_allocator>;
using client_request = http::request<client_body, http::basic_fields<field_allocator>>;
constexpr auto k_tuple = net::as_tuple(net::use_awaitable_t<executor_type>{});

inline std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return http::obsolete_reason(static_cast<http::status>(status));
  }
}

inline std::string error_type_for(int status) {
  switch (status) {
    case 400:
    case 413:
    case 431:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    default:
      return "server_error";
  }
}

// (Error codes are tested for being set before being compared: error_code's operator== is an
// out-of-line call, and these run on every read and write of the relay.)
// Writes what the socket takes now (it is non-blocking) and returns how many bytes of `bufs` are left
// to write asynchronously; sets `ec` on an error other than would_block.
template <class Buffers>
std::size_t write_now(socket_type& sock, const Buffers& bufs, boost::system::error_code& ec) {
  std::size_t total = net::buffer_size(bufs);
  std::size_t n = sock.write_some(bufs, ec);
  if (ec && (ec == net::error::would_block || ec == net::error::try_again)) {
    ec = {};
    n = 0;
  }
  return ec ? 0 : total - n;
}

// Parses what is already buffered into `parser`. need_more is not an error here (the caller reads
// more); need_buffer (a buffer body is full) neither.
template <class Parser>
void parse_buffered(Parser& parser, beast::flat_buffer& buffer, boost::system::error_code& ec) {
  while (!ec && buffer.size() > 0 && !parser.is_done()) {
    std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec && (ec == http::error::need_more || ec == http::error::need_buffer)) {
      ec = {};
      break;
    }
    if (used == 0) break;
  }
}

// A header's value by a linear walk over the message's few fields: beast's operator[] looks the name
// up in its ordered set with case-insensitive string compares, several times dearer on a request's
// handful of headers (it showed in per-request instruction counts).
template <class Fields>
std::string_view header_value(const Fields& fields, http::field name) {
  for (const auto& f : fields)
    if (f.name() == name) return f.value();
  return {};
}
template <class Fields>
std::string_view header_value(const Fields& fields, std::string_view name) {
  for (const auto& f : fields)
    if (f.name_string().size() == name.size() && beast::iequals(f.name_string(), name)) return f.value();
  return {};
}

inline void append_decimal(std::string& out, std::uint64_t v) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
  out.append(digits, end);
}

inline void append_chunk(std::string& out, std::string_view data) {
  char size[24];
  auto end = std::to_chars(size, size + sizeof size - 2, data.size(), 16).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(size, end);
  out.append(data);
  out += "\r\n"sv;
}

// The head of a response the gateway answers itself (errors, /health, /metrics, ...).
std::string response_head(int status, std::string_view content_type, std::size_t length, bool keep_alive,
                          std::string_view extra = {});

}  // namespace agifarm::gateway
