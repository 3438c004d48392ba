#include <fmt/format.h>
#include <sqlite3.h>

#include "gateway/usage.hpp"

namespace agifarm::gateway {

usage_store::~usage_store() {
  if (db_) {
    (void)flush();
    sqlite3_close(db_);
  }
}

status usage_store::open(const std::string& path) {
  std::lock_guard dlock(db_mu_);
  path_ = path;
  if (path.empty()) return {};
  if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    return make_error(fmt::format("usage_db {}: cannot open: {}", path, msg));
  }
  sqlite3_busy_timeout(db_, 2000);
  char* err = nullptr;
  const char* k_schema =
      "CREATE TABLE IF NOT EXISTS usage (key TEXT PRIMARY KEY, requests INTEGER NOT NULL, "
      "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)";
  if (sqlite3_exec(db_, k_schema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    sqlite3_close(db_);
    db_ = nullptr;
    return make_error(fmt::format("usage_db {}: {}", path, msg));
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT key, requests, prompt_tokens, completion_tokens FROM usage", -1, &st,
                         nullptr) != SQLITE_OK)
    return make_error(fmt::format("usage_db {}: {}", path, sqlite3_errmsg(db_)));
  std::lock_guard lock(mu_);
  while (sqlite3_step(st) == SQLITE_ROW) {
    usage_row r;
    const unsigned char* k = sqlite3_column_text(st, 0);
    r.key = k ? reinterpret_cast<const char*>(k) : "";
    r.requests = static_cast<std::uint64_t>(sqlite3_column_int64(st, 1));
    r.prompt_tokens = static_cast<std::uint64_t>(sqlite3_column_int64(st, 2));
    r.completion_tokens = static_cast<std::uint64_t>(sqlite3_column_int64(st, 3));
    rows_[r.key] = r;
  }
  sqlite3_finalize(st);
  return {};
}

void usage_store::add(const std::string& key, std::uint64_t requests, const token_usage& u) {
  std::lock_guard lock(mu_);
  auto& r = rows_[key];
  r.key = key;
  r.requests += requests;
  r.prompt_tokens += u.prompt;
  r.completion_tokens += u.completion;
  dirty_[key] = true;
}

status usage_store::flush() {
  std::lock_guard dlock(db_mu_);
  if (!db_) return {};
  std::vector<usage_row> changed;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, d] : dirty_)
      if (d) changed.push_back(rows_[k]);
    dirty_.clear();
  }
  if (changed.empty()) return {};
  sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(
          db_,
          "INSERT INTO usage (key, requests, prompt_tokens, completion_tokens) VALUES (?1, ?2, ?3, ?4) "
          "ON CONFLICT(key) DO UPDATE SET requests = ?2, prompt_tokens = ?3, completion_tokens = ?4",
          -1, &st, nullptr) != SQLITE_OK) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return make_error(fmt::format("usage_db {}: {}", path_, sqlite3_errmsg(db_)));
  }
  for (const auto& r : changed) {
    sqlite3_bind_text(st, 1, r.key.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(r.requests));
    sqlite3_bind_int64(st, 3, static_cast<sqlite3_int64>(r.prompt_tokens));
    sqlite3_bind_int64(st, 4, static_cast<sqlite3_int64>(r.completion_tokens));
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    std::lock_guard lock(mu_);
    for (const auto& r : changed) dirty_[r.key] = true;
    return make_error(fmt::format("usage_db {}: {}", path_, msg));
  }
  return {};
}

std::vector<usage_row> usage_store::rows() const {
  std::lock_guard lock(mu_);
  std::vector<usage_row> out;
  for (const auto& [k, r] : rows_) out.push_back(r);
  return out;
}

std::optional<usage_row> usage_store::row(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = rows_.find(key);
  if (it == rows_.end()) return std::nullopt;
  return it->second;
}

}  // namespace agifarm::gateway
