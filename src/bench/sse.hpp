// sse: the client side of an OpenAI streaming answer (Server-Sent Events over HTTP), as the bench reads it.
//
// sse_parser is incremental: feed it body bytes as they arrive, in any split, and it hands back each
// complete event's data (the `data:` lines of one event joined with '\n'; comments, `event:`, `id:` and
// `retry:` lines are skipped; CR, LF and CRLF line ends). A line longer than max_line_bytes is an error
// (a broken or hostile server cannot make the bench buffer without bound).
//
// parse_chunk reads one event's data: "[DONE]", or a chat/completions chunk: whether it carries generated
// text (choices[].delta.content / reasoning_content / text), the token counts of a final chunk (`usage`,
// else llama-server's `timings`: prompt = prompt_n + cache_n, completion = predicted_n: the same rule the
// gateway's metrics use), or an error object. Never throws on any bytes.
//
// Plain data, no shared state: one parser per stream, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agifarm::bench {

class sse_parser {
 public:
  explicit sse_parser(std::size_t max_line_bytes = 4u << 20) : max_line_(max_line_bytes) {}
  // Appends bytes; complete events' data go to `out`. false: a line exceeded the limit (the parser
  // stays failed).
  bool feed(std::string_view bytes, std::vector<std::string>& out);
  // End of stream: an event not yet closed by a blank line is delivered (servers may omit the last one).
  void finish(std::vector<std::string>& out);
  bool failed() const { return failed_; }

 private:
  void line(std::string_view l, std::vector<std::string>& out);
  std::size_t max_line_;
  std::string partial_;  // the current line, not yet ended
  std::string data_;     // data lines of the current event
  bool has_data_ = false;
  bool last_cr_ = false;  // the previous byte was CR (a following LF ends nothing)
  bool failed_ = false;
};

struct chunk_info {
  bool done = false;      // "[DONE]"
  bool json = false;      // the data parsed as a JSON object
  bool has_text = false;  // generated text in this chunk (content or reasoning), non-empty
  std::size_t text_bytes = 0;
  std::optional<std::uint64_t> prompt_tokens, completion_tokens;  // final chunk: usage or timings
  std::optional<std::string> error;  // {"error": {...}} or {"error": "..."}: its message
};

chunk_info parse_chunk(std::string_view data);

}  // namespace agifarm::bench
