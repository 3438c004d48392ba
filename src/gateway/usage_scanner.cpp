#include <string.h>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cstring>

#include "gateway/usage.hpp"

namespace agifarm::gateway {
namespace json = boost::json;

namespace {

// Whether an SSE event's data holds "usage" or "timings" (as a key or anywhere): one memchr pass over
// the 'g' both words contain, checking the bytes around each, instead of two memmem passes for every
// event of a stream (they were a quarter of the gateway's instructions on streams).
bool names_usage_or_timings(std::string_view l) {
  constexpr std::string_view k_usage = "\"usage\"", k_timings = "\"timings\"";
  const char* const begin = l.data();
  const char* const end = begin + l.size();
  for (const char* g = begin; g < end; ++g) {
    g = static_cast<const char*>(std::memchr(g, 'g', static_cast<std::size_t>(end - g)));
    if (!g) return false;
    const std::size_t at = static_cast<std::size_t>(g - begin);
    if (at >= 4 && l.substr(at - 4, k_usage.size()) == k_usage) return true;
    if (at >= 6 && l.substr(at - 6, k_timings.size()) == k_timings) return true;
  }
  return false;
}

// The last occurrence of `needle`: memrchr finds each candidate for its first byte from the end. The
// usage member sits near the end of a completion body, so this reads the body's tail, not all of it.
std::size_t rfind_bytes(std::string_view hay, std::string_view needle) {
  if (needle.empty() || needle.size() > hay.size()) return std::string_view::npos;
  std::size_t end = hay.size() - needle.size() + 1;  // candidates start below this
  while (end > 0) {
    const void* p = ::memrchr(hay.data(), needle.front(), end);
    if (!p) return std::string_view::npos;
    std::size_t at = static_cast<std::size_t>(static_cast<const char*>(p) - hay.data());
    if (std::memcmp(hay.data() + at, needle.data(), needle.size()) == 0) return at;
    end = at;
  }
  return std::string_view::npos;
}

// An integer member as a token count (a negative one counts 0); nullopt when absent or not an integer.
std::optional<std::uint64_t> number(const json::object& obj, const char* k) {
  auto* x = obj.if_contains(k);
  if (!x) return std::nullopt;
  if (auto* i = x->if_int64()) return *i < 0 ? 0 : static_cast<std::uint64_t>(*i);
  if (auto* i = x->if_uint64()) return *i;
  return std::nullopt;
}

// The token counts from a usage object's members: OpenAI's names first, Anthropic's otherwise;
// nullopt when none of the four is there. (Both the DOM and the SAX reader end here.)
std::optional<token_usage> usage_from_counts(std::optional<std::uint64_t> prompt_tokens,
                                             std::optional<std::uint64_t> input_tokens,
                                             std::optional<std::uint64_t> completion_tokens,
                                             std::optional<std::uint64_t> output_tokens) {
  auto prompt = prompt_tokens ? prompt_tokens : input_tokens;
  auto completion = completion_tokens ? completion_tokens : output_tokens;
  if (!prompt && !completion) return std::nullopt;
  return token_usage{prompt.value_or(0), completion.value_or(0)};
}

// The token counts of a usage object (OpenAI's or Anthropic's names).
std::optional<token_usage> usage_of(const json::object& uo) {
  return usage_from_counts(number(uo, "prompt_tokens"), number(uo, "input_tokens"),
                           number(uo, "completion_tokens"), number(uo, "output_tokens"));
}

// The token counts of one usage object, read by a SAX handler (no DOM: this runs once per proxied
// response): the integer members of the top-level object under OpenAI's and Anthropic's names, with
// usage_of()'s rules (a later duplicate key wins, as in a parsed object; a negative count is 0; a
// member that is not an integer does not count).
class usage_object_handler {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  using ec_t = boost::system::error_code;

  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_object_begin(ec_t&) { return ++depth_, true; }
  bool on_object_end(std::size_t, ec_t&) {
    if (--depth_ == 0) complete_ = true;
    return true;
  }
  bool on_array_begin(ec_t&) { return ++depth_, true; }
  bool on_array_end(std::size_t, ec_t&) { return --depth_, true; }
  bool on_key_part(std::string_view s, std::size_t, ec_t&) {
    if (depth_ == 1) key_.append(s);
    return true;
  }
  bool on_key(std::string_view s, std::size_t, ec_t&) {
    if (depth_ != 1) return true;
    std::string_view key = s;
    if (!key_.empty()) key = key_.append(s);  // it came in pieces
    slot_ = key == "prompt_tokens"       ? 0
            : key == "input_tokens"      ? 1
            : key == "completion_tokens" ? 2
            : key == "output_tokens"     ? 3
                                         : -1;
    key_.clear();
    if (slot_ >= 0) values_[slot_].reset();  // a later duplicate replaces an earlier member
    return true;
  }
  bool on_string_part(std::string_view, std::size_t, ec_t&) { return true; }
  bool on_string(std::string_view, std::size_t, ec_t&) { return true; }
  bool on_number_part(std::string_view, ec_t&) { return true; }
  bool on_int64(std::int64_t v, std::string_view, ec_t&) {
    if (depth_ == 1 && slot_ >= 0) values_[slot_] = v < 0 ? 0 : static_cast<std::uint64_t>(v);
    return true;
  }
  bool on_uint64(std::uint64_t v, std::string_view, ec_t&) {
    if (depth_ == 1 && slot_ >= 0) values_[slot_] = v;
    return true;
  }
  bool on_double(double, std::string_view, ec_t&) { return true; }
  bool on_bool(bool, ec_t&) { return true; }
  bool on_null(ec_t&) { return true; }
  bool on_comment_part(std::string_view, ec_t&) { return true; }
  bool on_comment(std::string_view, ec_t&) { return true; }

  // After a complete parse of an object: the counts, or nullopt when none of the four names held an
  // integer.
  std::optional<token_usage> result() const {
    if (!complete_) return std::nullopt;
    return usage_from_counts(values_[0], values_[1], values_[2], values_[3]);
  }

 private:
  int depth_ = 0;
  bool complete_ = false;  // the top-level object closed
  int slot_ = -1;
  std::string key_;
  std::optional<std::uint64_t> values_[4];
};

// The usage object at the start of `text`. What follows it is not read: the parser stops after one
// complete value (a final write, so that it never saves its state for a next one, which would allocate).
std::optional<token_usage> parse_usage_object(std::string_view text) {
  boost::json::basic_parser<usage_object_handler> p(boost::json::parse_options{});
  boost::system::error_code ec;
  p.write_some(false, text.data(), text.size(), ec);
  if (ec) return std::nullopt;
  return p.handler().result();
}

// Parses `text` and calls f(value) if it is JSON. The value lives in a stack arena (this runs once per
// proxied response; typical usage objects and stream events never touch the heap).
template <class F>
void with_parsed(std::string_view text, F&& f) {
  alignas(std::max_align_t) unsigned char arena[4096];
  unsigned char temp[1024];
  json::monotonic_resource mr(arena, sizeof arena);
  json::parser p(json::storage_ptr(), json::parse_options(), temp, sizeof temp);
  p.reset(&mr);
  boost::system::error_code ec;
  p.write(text.data(), text.size(), ec);
  if (ec) return;
  f(p.release());
}

// The last `"usage": {...}` member of a JSON text, read without parsing the rest (a completion body
// can be large; the usage object is small). Falls back to the whole text when the quick look finds
// nothing it can read.
std::optional<token_usage> usage_member(std::string_view text) {
  constexpr std::string_view k_key = "\"usage\"";
  const std::size_t last = rfind_bytes(text, k_key);
  if (last == std::string_view::npos) return std::nullopt;
  std::size_t i = last + k_key.size();
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
  if (i < text.size() && text[i] == ':') {
    ++i;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
    if (i < text.size() && text[i] == '{')
      if (auto u = parse_usage_object(text.substr(i))) return u;
  }
  return usage_from_json(text);
}

}  // namespace

std::optional<token_usage> usage_from_json(std::string_view text) {
  std::optional<token_usage> out;
  with_parsed(text, [&](const json::value& v) {
    auto* o = v.if_object();
    if (!o) return;
    const json::value* u = o->if_contains("usage");
    if (!u) {
      // Anthropic streams: {"type":"message_start","message":{"usage":{...}}}
      if (auto* m = o->if_contains("message"))
        if (auto* mo = m->if_object()) u = mo->if_contains("usage");
    }
    if (!u || !u->is_object()) {
      // llama-server's last stream chunk carries "timings" even when the client did not ask for usage
      // (stream_options.include_usage): prompt tokens = processed + taken from the cache.
      auto* tm = o->if_contains("timings");
      auto* to = tm ? tm->if_object() : nullptr;
      if (!to) return;
      auto prompt = number(*to, "prompt_n"), predicted = number(*to, "predicted_n"),
           cached = number(*to, "cache_n");
      if (!prompt || !predicted) return;
      out = token_usage{*prompt + cached.value_or(0), *predicted};
      return;
    }
    out = usage_of(u->get_object());
  });
  return out;
}

void usage_scanner::line(std::string_view l) {
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  constexpr std::string_view k_data = "data:";
  if (l.substr(0, k_data.size()) != k_data) return;
  l.remove_prefix(k_data.size());
  if (!l.empty() && l.front() == ' ') l.remove_prefix(1);
  if (l == "[DONE]") {
    done_ = true;
    return;
  }
  if (!names_usage_or_timings(l)) return;
  if (auto u = usage_from_json(l)) {
    // Anthropic splits usage across message_start (input) and message_delta (output): merge.
    if (!found_) found_ = token_usage{};
    if (u->prompt) found_->prompt = u->prompt;
    if (u->completion) found_->completion = u->completion;
  }
}

void usage_scanner::feed(std::string_view bytes) {
  if (!sse_) {
    if (overflow_) return;
    if (buf_.size() + bytes.size() > k_max_line) {
      overflow_ = true;
      buf_.clear();
      return;
    }
    buf_.append(bytes);
    return;
  }
  while (!bytes.empty()) {
    auto nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      if (!overflow_) {
        if (buf_.size() + bytes.size() > k_max_line) {
          overflow_ = true;
          buf_.clear();
        } else {
          buf_.append(bytes);
        }
      }
      return;
    }
    if (overflow_) {
      overflow_ = false;  // the overlong line ends here; skip it
      buf_.clear();
    } else if (buf_.empty()) {
      line(bytes.substr(0, nl));
    } else {
      buf_.append(bytes.substr(0, nl));
      line(buf_);
      buf_.clear();
    }
    bytes.remove_prefix(nl + 1);
  }
}

std::optional<token_usage> usage_scanner::finish() {
  if (!sse_) {
    if (overflow_ || buf_.empty()) return std::nullopt;
    return usage_member(buf_);
  }
  if (!buf_.empty() && !overflow_) {
    line(buf_);
    buf_.clear();
  }
  return found_;
}

}  // namespace agifarm::gateway
