// client: the bench's HTTP side (Boost.Beast, C++20 coroutines): where the farm is (endpoint), a
// blocking GET for /v1/models and /metrics, and the streaming chat request the load is made of, timed
// as the client sees it (TTFT: request sent -> first chunk with generated text; ITL: gaps between
// chunks with text; end to end: sent -> last byte).
//
// stream_chat runs on the caller's io_context (one connection per request; every operation under one
// deadline: a stuck server costs the request its timeout, never a hang). Errors are values in the
// record: connect, timeout, http_<status>, stream (no [DONE], a malformed or oversized stream), backend
// (an error object inside the stream).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>
#include <string_view>

#include "bench/stats.hpp"
#include "bench/workload.hpp"
#include "common/result.hpp"

namespace agifarm::bench {

struct endpoint {
  std::string host;
  int port = 0;
  std::string api_key;      // sent as "Authorization: Bearer <key>" when not empty
  std::string url() const;  // "http://host:port"
};

// "http://127.0.0.1:8080", with or without a trailing "/" or "/v1" (what `agifarm up` prints). Only http.
result<endpoint> parse_url(std::string_view url);

struct http_reply {
  int status = 0;
  std::string body;
};
// Blocking GET (its own io_context). Errors name the URL and what failed (exit code 1).
result<http_reply> http_get(const endpoint& ep, const std::string& target, std::chrono::milliseconds timeout);

using clock_type = std::chrono::steady_clock;

// One streaming POST /v1/chat/completions. t0: the bench's start (record times are seconds since it).
// reply_text: the generated text (for chat histories), up to max_reply_bytes.
boost::asio::awaitable<request_record> stream_chat(const endpoint& ep, const request_spec& req,
                                                   clock_type::time_point t0,
                                                   std::chrono::milliseconds timeout, std::string* reply_text,
                                                   std::size_t max_reply_bytes = 4096);

}  // namespace agifarm::bench
