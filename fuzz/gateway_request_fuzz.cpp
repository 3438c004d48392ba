// libFuzzer target over the gateway's request path without sockets: Beast's HTTP request parser (with
// the gateway's header/body limits), request inspection (JSON -> model/stream/affinity), routing,
// the balancers' choice, and the usage scanner fed the same bytes as a response in random pieces.
// Request inspection is checked against the DOM reference (tests/gateway/request_reference.hpp).
// Byte 0 picks the endpoint, byte 1 the piece size; the rest is an HTTP request or a JSON body.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "../tests/gateway/request_reference.hpp"
#include "gateway/balancer.hpp"
#include "gateway/config.hpp"
#include "gateway/request.hpp"
#include "gateway/router.hpp"
#include "gateway/usage.hpp"

namespace {

using namespace agifarm::gateway;

const router& the_router() {
  static const config c = [] {
    config k;
    k.pools.push_back(
        {"qwen3-8b", {"fast", "code"}, balance::prefix_affinity, 2, 1, {{"a", "http://127.0.0.1:1"}}});
    k.pools.push_back(
        {"qwen3-32b", {"think"}, balance::least_outstanding, 1, 0, {{"b", "http://127.0.0.1:2"}}});
    return k;
  }();
  static const router r(c);
  return r;
}

void inspect_and_route(std::string_view body, endpoint kind) {
  auto info = inspect_request(body, kind);
  // Differential: the gateway's SAX reader must say what the DOM reference says.
  auto want = reference::inspect_request_dom(body, kind);
  if (info.ok() != want.ok()) __builtin_trap();
  if (!want.ok() && info.err().message != want.err().message) __builtin_trap();
  if (want.ok() && (info->model != want->model || info->stream != want->stream ||
                    info->has_affinity != want->has_affinity || info->affinity_hash != want->affinity_hash))
    __builtin_trap();
  if (!info) return;
  const router& r = the_router();
  auto pool = r.find(info->model);
  if (!pool) {
    (void)r.unknown_model_message(info->model);
    return;
  }
  static auto affinity = make_prefix_affinity({"a", "b", "c"});
  static auto least = make_least_outstanding();
  replica_view v[3] = {{0, static_cast<int>(info->affinity_hash % 3), 2}, {1, 1, 2}, {2, 0, 1}};
  pick_request p{info->has_affinity, info->affinity_hash, false};
  if (auto c = affinity->choose(v, p)) {
    if (*c >= 3 || v[*c].outstanding >= v[*c].slots) __builtin_trap();
  }
  if (auto c = least->choose(v, p)) {
    if (*c >= 3 || v[*c].outstanding >= v[*c].slots) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto kind = static_cast<endpoint>(data[0] % 4);
  const std::size_t piece = 1 + data[1] % 64;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

  // 1. As a JSON body straight to inspection and routing.
  inspect_and_route(bytes, kind);

  // 2. As a whole HTTP request through Beast's parser with the gateway's limits.
  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.header_limit(4096);
  parser.body_limit(65536);
  boost::beast::error_code ec;
  std::size_t off = 0;
  while (off < bytes.size() && !parser.is_done()) {
    std::size_t n = parser.put(boost::asio::buffer(bytes.data() + off, bytes.size() - off), ec);
    if (ec == http::error::need_more) break;
    if (ec) break;
    if (n == 0) break;
    off += n;
  }
  if (!ec && parser.is_done()) inspect_and_route(parser.get().body(), kind);

  // 3. As a backend response body, in pieces, to the usage scanner (SSE and JSON modes).
  usage_scanner sse(true), js(false);
  for (std::size_t i = 0; i < bytes.size(); i += piece) {
    sse.feed(bytes.substr(i, piece));
    js.feed(bytes.substr(i, piece));
  }
  (void)sse.finish();
  (void)js.finish();
  (void)parse_host_port(bytes.substr(0, 64));
  (void)parse_http_url(bytes.substr(0, 64));
  return 0;
}
