// usage: token accounting.
//  - usage_scanner reads a backend response as it is relayed (JSON body or SSE stream, fed in arbitrary
//    pieces) and finds the last `usage` object (OpenAI prompt_tokens/completion_tokens, Anthropic
//    input_tokens/output_tokens). Bounded memory (k_max_line bytes); one per response; not thread-safe.
//  - usage_store keeps per-key totals (requests, prompt and completion tokens) in memory and persists
//    them to SQLite on flush(); open() loads earlier totals, so usage survives restarts. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

struct sqlite3;

namespace agifarm::gateway {

struct token_usage {
  std::uint64_t prompt = 0;
  std::uint64_t completion = 0;
};

class usage_scanner {
 public:
  static constexpr std::size_t k_max_line = 1 << 20;
  explicit usage_scanner(bool sse = false) : sse_(sse) {}
  // Starts over for another response, keeping the buffer's capacity (a scanner reused per connection
  // allocates nothing once warm).
  void reset(bool sse) {
    sse_ = sse;
    overflow_ = done_ = false;
    buf_.clear();
    found_.reset();
  }
  void feed(std::string_view bytes);
  // Call after the last piece. The usage found, if any.
  std::optional<token_usage> finish();
  // SSE only: true once a `data: [DONE]` line was seen.
  bool saw_done() const { return done_; }

 private:
  void line(std::string_view l);
  bool sse_;
  bool overflow_ = false;
  bool done_ = false;
  std::string buf_;
  std::optional<token_usage> found_;
};

// Reads usage out of one JSON text; nullopt when there is none or the text is not JSON.
std::optional<token_usage> usage_from_json(std::string_view text);

struct usage_row {
  std::string key;
  std::uint64_t requests = 0;
  std::uint64_t prompt_tokens = 0;
  std::uint64_t completion_tokens = 0;
};

class usage_store {
 public:
  usage_store() = default;
  ~usage_store();
  usage_store(const usage_store&) = delete;
  usage_store& operator=(const usage_store&) = delete;
  // path empty: memory only. Creates the table if needed and loads existing rows.
  status open(const std::string& path);
  void add(const std::string& key, std::uint64_t requests, const token_usage& u);
  // Writes changed rows in one transaction. Errors name the file.
  status flush();
  std::vector<usage_row> rows() const;
  std::optional<usage_row> row(const std::string& key) const;

 private:
  mutable std::mutex mu_;
  std::mutex db_mu_;
  sqlite3* db_ = nullptr;
  std::string path_;
  std::map<std::string, usage_row> rows_;
  std::map<std::string, bool> dirty_;
};

}  // namespace agifarm::gateway
