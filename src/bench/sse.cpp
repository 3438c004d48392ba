#include "bench/sse.hpp"

#include <boost/json.hpp>

namespace agifarm::bench {
namespace json = boost::json;

bool sse_parser::feed(std::string_view bytes, std::vector<std::string>& out) {
  if (failed_) return false;
  for (char c : bytes) {
    if (c == '\n' && last_cr_) {
      last_cr_ = false;
      continue;  // the LF of a CRLF
    }
    last_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(partial_, out);
      partial_.clear();
      continue;
    }
    if (partial_.size() >= max_line_) {
      failed_ = true;
      partial_.clear();
      data_.clear();
      return false;
    }
    partial_.push_back(c);
  }
  return true;
}

void sse_parser::finish(std::vector<std::string>& out) {
  if (failed_) return;
  if (!partial_.empty()) {
    line(partial_, out);
    partial_.clear();
  }
  line({}, out);  // close the last event
}

void sse_parser::line(std::string_view l, std::vector<std::string>& out) {
  if (l.empty()) {  // dispatch
    if (has_data_) out.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (l.front() == ':') return;  // comment
  auto colon = l.find(':');
  std::string_view field = l.substr(0, colon), value;
  if (colon != std::string_view::npos) {
    value = l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field != "data") return;
  if (has_data_) data_.push_back('\n');
  if (data_.size() + value.size() > max_line_) {  // one event's data is bounded like a line
    failed_ = true;
    data_.clear();
    has_data_ = false;
    return;
  }
  data_.append(value);
  has_data_ = true;
}

namespace {

std::optional<std::uint64_t> count(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (v->is_uint64()) return v->as_uint64();
  if (v->is_int64() && v->as_int64() >= 0) return static_cast<std::uint64_t>(v->as_int64());
  if (v->is_double() && v->as_double() >= 0 && v->as_double() < 1e18)
    return static_cast<std::uint64_t>(v->as_double());
  return std::nullopt;
}

std::size_t text_of(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? v->as_string().size() : 0;
}

}  // namespace

chunk_info parse_chunk(std::string_view data) {
  chunk_info out;
  std::string_view d = data;
  while (!d.empty() && (d.back() == ' ' || d.back() == '\n')) d.remove_suffix(1);
  if (d == "[DONE]") {
    out.done = true;
    return out;
  }
  boost::system::error_code ec;
  json::value v = json::parse(d, ec);
  if (ec || !v.is_object()) return out;
  out.json = true;
  const auto& o = v.get_object();
  if (auto* e = o.if_contains("error")) {
    if (e->is_string())
      out.error = std::string(e->get_string());
    else if (auto* eo = e->if_object(); eo && eo->contains("message") && eo->at("message").is_string())
      out.error = std::string(eo->at("message").get_string());
    else
      out.error = json::serialize(*e);
  }
  if (auto* ch = o.if_contains("choices"); ch && ch->is_array()) {
    for (const auto& c : ch->get_array()) {
      auto* co = c.if_object();
      if (!co) continue;
      std::size_t n = text_of(*co, "text");  // /v1/completions
      if (auto* delta = co->if_contains("delta"); delta && delta->is_object())
        n += text_of(delta->get_object(), "content") + text_of(delta->get_object(), "reasoning_content");
      out.text_bytes += n;
    }
    out.has_text = out.text_bytes > 0;
  }
  if (auto* u = o.if_contains("usage"); u && u->is_object()) {
    out.prompt_tokens = count(u->get_object(), "prompt_tokens");
    out.completion_tokens = count(u->get_object(), "completion_tokens");
  } else if (auto* t = o.if_contains("timings"); t && t->is_object()) {
    auto p = count(t->get_object(), "prompt_n"), n = count(t->get_object(), "predicted_n");
    auto cached = count(t->get_object(), "cache_n");
    if (p && n) {
      out.prompt_tokens = *p + cached.value_or(0);
      out.completion_tokens = *n;
    }
  }
  return out;
}

}  // namespace agifarm::bench
