#include "gateway/request.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cstddef>
#include <optional>
#include <vector>

namespace agifarm::gateway {
namespace json = boost::json;

std::uint64_t hash64(std::string_view bytes, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (unsigned char ch : bytes) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::string openai_error_body(std::string_view message, std::string_view type, std::string_view code) {
  json::object e;
  e["message"] = message;
  e["type"] = type;
  e["code"] = code;
  e["param"] = nullptr;
  json::object o;
  o["error"] = std::move(e);
  return json::serialize(o);
}

namespace {

std::string position_of(std::string_view body, std::size_t offset) {
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

// Appends at most what keeps `out` within k_affinity_bytes.
void append_bounded(std::string& out, std::string_view s) {
  if (out.size() >= k_affinity_bytes) return;
  out.append(s.substr(0, k_affinity_bytes - out.size()));
}

// Reads what routing needs while Boost.JSON's basic_parser validates the body: no DOM is built (the
// gateway inspects every request; the DOM cost more than all its other user-space work but Beast's
// parser). A value's meaning comes from where it stands (its slot); each member's last occurrence wins,
// as in a parsed object, and the checks run after the parse in the order a DOM reader would make them,
// so the results, errors included, are those of tests/gateway/request_reference.hpp.
class inspect_handler {
 public:
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();
  using ec_t = boost::system::error_code;

  explicit inspect_handler(endpoint kind) : kind_(kind) {}

  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_object_begin(ec_t& ec) { return open(true, ec); }
  bool on_object_end(std::size_t, ec_t&) { return close(); }
  bool on_array_begin(ec_t& ec) { return open(false, ec); }
  bool on_array_end(std::size_t, ec_t&) { return close(); }
  bool on_key_part(std::string_view s, std::size_t, ec_t&) {
    part_.append(s);
    return true;
  }
  bool on_key(std::string_view s, std::size_t, ec_t&) {
    std::string_view key = whole(s);
    frame& f = stack_[depth_ - 1];
    switch (f.what) {
      case slot::root:
        f.member = key == "model"      ? slot::model
                   : key == "stream"   ? slot::stream
                   : key == "messages" ? slot::messages
                   : key == "system"   ? slot::system
                   : key == "prompt"   ? slot::prompt
                   : key == "input"    ? slot::input
                                       : slot::none;
        break;
      case slot::message:
        f.member = key == "role" ? slot::role : key == "content" ? slot::content : slot::none;
        break;
      case slot::part:
        f.member = key == "text" ? slot::part_text : slot::none;
        break;
      default:
        break;
    }
    part_.clear();
    return true;
  }
  bool on_string_part(std::string_view s, std::size_t, ec_t&) {
    part_.append(s);
    return true;
  }
  bool on_string(std::string_view s, std::size_t, ec_t&) {
    std::string_view v = whole(s);
    scalar(value::string, v);
    part_.clear();
    return true;
  }
  bool on_number_part(std::string_view, ec_t&) { return true; }
  bool on_int64(std::int64_t, std::string_view, ec_t&) { return scalar(value::other); }
  bool on_uint64(std::uint64_t, std::string_view, ec_t&) { return scalar(value::other); }
  bool on_double(double, std::string_view, ec_t&) { return scalar(value::other); }
  bool on_bool(bool b, ec_t&) { return scalar(b ? value::true_ : value::false_); }
  bool on_null(ec_t&) { return scalar(value::null); }
  bool on_comment_part(std::string_view, ec_t&) { return true; }
  bool on_comment(std::string_view, ec_t&) { return true; }

  // After a complete parse: the checks, in the reference's order.
  result<request_info> finish() {
    if (!root_is_object_) return make_error("the request body must be a JSON object");
    request_info info;
    if (model_ == value::string)
      info.model = model_text_;
    else if (model_ != value::absent)
      return make_error("'model' must be a string");
    if (stream_ == value::true_ || stream_ == value::false_)
      info.stream = stream_ == value::true_;
    else if (stream_ != value::absent && stream_ != value::null)
      return make_error("'stream' must be true or false");
    std::string key;
    switch (kind_) {
      case endpoint::chat_completions:
      case endpoint::messages:
        if (kind_ == endpoint::messages) append_bounded(key, system_text_);
        if (messages_ == value::absent) return make_error("'messages' is required");
        if (messages_ != value::array) return make_error("'messages' must be an array");
        if (bad_message_) return make_error(fmt::format("'messages[{}]' must be an object", *bad_message_));
        if (key.empty()) {
          key = std::move(messages_key_);
        } else {  // a system prompt first: the bound applies to both together
          for (const auto& m : messages_seen_) append_message(key, m);
        }
        break;
      case endpoint::completions:
        if (prompt_ == value::absent) return make_error("'prompt' is required");
        append_bounded(key, prompt_text_);
        break;
      case endpoint::embeddings:
        if (!input_seen_) return make_error("'input' is required");
        break;
    }
    if (!key.empty()) {
      info.has_affinity = true;
      info.affinity_hash = hash64(key);
    }
    return info;
  }

 private:
  // Where a value stands: a top-level member, a message of "messages", a member of a message, a part
  // of a content (or system) array, the "text" of a part, the first element of a prompt array.
  enum class slot : std::uint8_t {
    none,
    root,
    model,
    stream,
    messages,
    system,
    prompt,
    input,
    message,
    role,
    content,
    part,
    part_text,
    prompt_first
  };
  enum class value : std::uint8_t { absent, string, true_, false_, null, array, other };
  struct frame {
    slot what = slot::none;    // the container this frame is
    slot member = slot::none;  // objects: where the current member's value stands
    std::size_t index = 0;     // arrays: the index of the next element
  };
  struct message_text {
    std::string role;
    std::string content;  // at most k_affinity_bytes: no more of it can reach the key
  };
  static constexpr int k_max_depth = 64;  // parse_options' max_depth (32) stops the parser first

  static void append_message(std::string& key, const message_text& m) {
    key.append(m.role);
    key.push_back('\x1f');
    append_bounded(key, m.content);
    key.push_back('\x1e');
  }
  std::string_view whole(std::string_view last) {
    if (part_.empty()) return last;
    part_.append(last);
    return part_;
  }
  static void set_capped(std::string& out, std::string_view s) {
    out.clear();
    append_bounded(out, s);
  }

  slot value_slot() const {
    if (depth_ == 0) return slot::root;
    const frame& p = stack_[depth_ - 1];
    switch (p.what) {
      case slot::root:
      case slot::message:
      case slot::part:
        return p.member;
      case slot::messages:
        return messages_open_ ? slot::message : slot::none;
      case slot::content:
      case slot::system:
        return slot::part;
      case slot::prompt:
        return p.index == 0 ? slot::prompt_first : slot::none;
      default:
        return slot::none;
    }
  }
  // A value (scalar or container) that ended: the next element of its array.
  void value_done() {
    if (depth_ > 0) stack_[depth_ - 1].index++;
  }
  // A message element that is not an object: the reference's first error, unless a user message
  // came before it (the reference stops reading there).
  void not_a_message() {
    bad_message_ = stack_[depth_ - 1].index;
    messages_open_ = false;
  }

  bool scalar(value v, std::string_view text = {}) {
    switch (value_slot()) {
      case slot::root:
        root_is_object_ = false;
        break;
      case slot::model:
        model_ = v == value::string ? value::string : value::other;
        if (v == value::string) model_text_.assign(text);
        break;
      case slot::stream:
        stream_ = v == value::string ? value::other : v;
        break;
      case slot::messages:
        messages_ = value::other;
        break;
      case slot::system:
        system_text_.clear();
        if (v == value::string) set_capped(system_text_, text);
        break;
      case slot::prompt:
        prompt_ = value::other;
        prompt_text_.clear();
        if (v == value::string) set_capped(prompt_text_, text);
        break;
      case slot::prompt_first:
        if (v == value::string) set_capped(prompt_text_, text);
        break;
      case slot::input:
        input_seen_ = true;
        break;
      case slot::message:
        not_a_message();
        break;
      case slot::role:
        current_.role.clear();
        if (v == value::string) current_.role.assign(text);
        break;
      case slot::content:
        current_.content.clear();
        if (v == value::string) set_capped(current_.content, text);
        break;
      case slot::part_text:
        has_part_text_ = v == value::string;
        if (has_part_text_) set_capped(part_text_, text);
        break;
      default:
        break;
    }
    value_done();
    return true;
  }

  bool open(bool object, ec_t& ec) {
    if (depth_ >= k_max_depth) {
      ec = json::error::too_deep;
      return false;
    }
    frame f;
    switch (value_slot()) {
      case slot::root:
        root_is_object_ = object;
        if (object) f.what = slot::root;
        break;
      case slot::model:
        model_ = value::other;
        break;
      case slot::stream:
        stream_ = value::other;
        break;
      case slot::messages:
        messages_ = object ? value::other : value::array;
        messages_seen_.clear();
        messages_key_.clear();
        bad_message_.reset();
        messages_open_ = !object;
        if (!object) f.what = slot::messages;
        break;
      case slot::system:
        system_text_.clear();
        if (!object) f.what = slot::system;
        break;
      case slot::prompt:
        prompt_ = value::other;
        prompt_text_.clear();
        if (!object) f.what = slot::prompt;
        break;
      case slot::input:
        input_seen_ = true;
        break;
      case slot::message:
        if (!object) {
          not_a_message();
        } else {
          f.what = slot::message;
          current_.role.clear();
          current_.content.clear();
        }
        break;
      case slot::role:
        current_.role.clear();
        break;
      case slot::content:
        current_.content.clear();
        if (!object) f.what = slot::content;
        break;
      case slot::part:
        if (object) {
          f.what = slot::part;
          has_part_text_ = false;
        }
        break;
      case slot::part_text:
        has_part_text_ = false;
        break;
      default:
        break;
    }
    stack_[depth_++] = f;
    return true;
  }

  bool close() {
    const frame f = stack_[--depth_];
    if (f.what == slot::message) {
      // The key as if no system prompt came first; /v1/messages also keeps the messages, in case one
      // does (it may stand after "messages" in the body).
      append_message(messages_key_, current_);
      if (kind_ == endpoint::messages) messages_seen_.push_back(current_);
      if (current_.role == "user")
        messages_open_ = false;  // the reference reads up to the first user message
    } else if (f.what == slot::part && has_part_text_) {
      // A part of a message's content, or of the system prompt.
      std::string& dest = stack_[depth_ - 1].what == slot::system ? system_text_ : current_.content;
      append_bounded(dest, part_text_);
    }
    value_done();
    return true;
  }

  endpoint kind_;
  frame stack_[k_max_depth];
  int depth_ = 0;
  std::string part_;  // a key or string that came in pieces
  bool root_is_object_ = false;
  value model_ = value::absent, stream_ = value::absent, messages_ = value::absent, prompt_ = value::absent;
  bool input_seen_ = false;
  std::string model_text_, system_text_, prompt_text_;
  std::string messages_key_;                 // the affinity key's messages part
  std::vector<message_text> messages_seen_;  // /v1/messages only
  std::optional<std::size_t> bad_message_;
  bool messages_open_ = false;
  message_text current_;
  bool has_part_text_ = false;
  std::string part_text_;
};

}  // namespace

result<request_info> inspect_request(std::string_view body, endpoint kind) {
  json::basic_parser<inspect_handler> p(json::parse_options(), kind);
  boost::system::error_code ec;
  // One final write (more = false): the parser never has to save its state for a next write, which
  // would allocate.
  std::size_t n = p.write_some(false, body.data(), body.size(), ec);
  if (!ec && n < body.size()) {
    // write_some stops after one complete value: anything but whitespace after it is an error.
    std::size_t i = n;
    while (i < body.size() && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) ++i;
    if (i < body.size())
      return make_error(
          fmt::format("malformed JSON at {}: unexpected data after the JSON value", position_of(body, i)));
  }
  if (ec) {
    std::size_t at = ec == json::error::incomplete || n >= body.size() ? body.size() : n;
    if (body.empty()) return make_error("malformed JSON: the request body is empty");
    return make_error(fmt::format("malformed JSON at {}: {}", position_of(body, at), ec.message()));
  }
  return p.handler().finish();
}

}  // namespace agifarm::gateway
