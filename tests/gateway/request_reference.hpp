// The reference for gateway::inspect_request: the same contract implemented over a parsed DOM
// (boost::json::value), as the gateway did before it read requests with a SAX handler. The unit tests
// and gateway_request_fuzz check that both give the same result (value or error message) on any body.
#pragma once

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstddef>

#include "gateway/request.hpp"

namespace agifarm::gateway::reference {
namespace json = boost::json;

namespace detail {

inline void append_bounded(std::string& out, std::string_view s) {
  if (out.size() >= k_affinity_bytes) return;
  out.append(s.substr(0, k_affinity_bytes - out.size()));
}

// Text of a message's content: a string, or an array of parts with "text".
inline void append_content(std::string& out, const json::value* content) {
  if (!content) return;
  if (auto* s = content->if_string()) {
    append_bounded(out, *s);
  } else if (auto* a = content->if_array()) {
    for (const auto& part : *a) {
      if (auto* po = part.if_object())
        if (auto* t = po->if_contains("text"))
          if (auto* ts = t->if_string()) append_bounded(out, *ts);
    }
  }
}

inline std::string position_of(std::string_view body, std::size_t offset) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < offset && i < body.size(); ++i) {
    if (body[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {}, column {} (byte {})", line, col, offset);
}

}  // namespace detail

using namespace detail;

inline result<request_info> inspect_request_dom(std::string_view body, endpoint kind) {
  // The parsed value lives only in this call: a stack arena spares the allocator for typical requests
  // (bigger bodies spill over to the heap).
  unsigned char temp[2048];
  alignas(std::max_align_t) unsigned char arena[8192];
  json::monotonic_resource mr(arena, sizeof arena);
  json::stream_parser p(json::storage_ptr(), json::parse_options(), temp, sizeof temp);
  p.reset(&mr);
  boost::system::error_code ec;
  std::size_t n = p.write_some(body.data(), body.size(), ec);
  if (!ec && n < body.size()) {
    // write_some stops after one complete value: anything but whitespace after it is an error.
    std::size_t i = n;
    while (i < body.size() && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) ++i;
    if (i < body.size())
      return make_error(
          fmt::format("malformed JSON at {}: unexpected data after the JSON value", position_of(body, i)));
  }
  if (!ec) p.finish(ec);
  if (ec) {
    std::size_t at = ec == json::error::incomplete || n >= body.size() ? body.size() : n;
    if (body.empty()) return make_error("malformed JSON: the request body is empty");
    return make_error(fmt::format("malformed JSON at {}: {}", position_of(body, at), ec.message()));
  }
  json::value v = p.release();
  auto* o = v.if_object();
  if (!o) return make_error("the request body must be a JSON object");
  request_info info;
  if (auto* m = o->if_contains("model")) {
    auto* s = m->if_string();
    if (!s) return make_error("'model' must be a string");
    info.model = std::string(*s);
  }
  if (auto* st = o->if_contains("stream")) {
    if (st->is_bool())
      info.stream = st->get_bool();
    else if (!st->is_null())
      return make_error("'stream' must be true or false");
  }
  std::string key;
  switch (kind) {
    case endpoint::chat_completions:
    case endpoint::messages: {
      if (kind == endpoint::messages) {
        if (auto* sys = o->if_contains("system")) append_content(key, sys);
      }
      auto* msgs = o->if_contains("messages");
      if (!msgs) return make_error("'messages' is required");
      auto* a = msgs->if_array();
      if (!a) return make_error("'messages' must be an array");
      // System prompt(s) and the first user message: stable across the turns of one conversation.
      for (std::size_t i = 0; i < a->size(); ++i) {
        auto* mo = (*a)[i].if_object();
        if (!mo) return make_error(fmt::format("'messages[{}]' must be an object", i));
        std::string_view role;
        if (auto* r = mo->if_contains("role"))
          if (auto* rs = r->if_string()) role = *rs;
        key.append(role);
        key.push_back('\x1f');
        append_content(key, mo->if_contains("content"));
        key.push_back('\x1e');
        if (role == "user") break;
      }
      break;
    }
    case endpoint::completions: {
      auto* pr = o->if_contains("prompt");
      if (!pr) return make_error("'prompt' is required");
      if (auto* s = pr->if_string())
        append_bounded(key, *s);
      else if (auto* a = pr->if_array(); a && !a->empty() && (*a)[0].is_string())
        append_bounded(key, (*a)[0].get_string());
      break;
    }
    case endpoint::embeddings:
      if (!o->if_contains("input")) return make_error("'input' is required");
      break;
  }
  if (!key.empty()) {
    info.has_affinity = true;
    info.affinity_hash = hash64(key);
  }
  return info;
}

}  // namespace agifarm::gateway::reference
