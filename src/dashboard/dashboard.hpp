// dashboard: the farm's web page, served by the gateway (docs/dashboard.md).
//
//   GET /                  the page (HTML; its CSS and JS under /ui/)
//   GET /ui/<file>         the page's files and the vendored uPlot (web_assets), with strong ETags
//   GET /agifarm/status    the JSON of `agifarm status --json` (context::status_json), polled by the page
//
// Everything is built into the binary (nothing read from disk or fetched at run time). When the farm has
// API keys the dashboard asks for one: "Authorization: Bearer <key>", or HTTP Basic with the key as the
// password (what a browser sends after its login prompt). Pure and thread-safe (no state of its own).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agifarm::dashboard {

struct request {
  std::string_view method;         // "GET", "HEAD", ...
  std::string_view target;         // path and query, e.g. "/ui/app.js?v=1"
  std::string_view if_none_match;  // the If-None-Match header, "" if absent
  std::string_view authorization;  // the Authorization header, "" if absent
};

struct response {
  int status = 200;
  std::string content_type;
  std::string body;                                          // empty for HEAD and 304
  std::vector<std::pair<std::string, std::string>> headers;  // ETag, Cache-Control, WWW-Authenticate, Allow
};

struct context {
  // The status JSON (farm::status_json serialised); called for GET /agifarm/status, must not block long.
  std::function<std::string()> status_json;
  // Whether a presented key is one of the farm's API keys. Empty: the farm has no keys (no login).
  std::function<bool(std::string_view key)> key_ok;
};

// True for the paths the dashboard answers (/, /index.html, /ui/..., /agifarm/status).
bool owns(std::string_view target);

// The answer for one of those paths; nullopt for any other path (the gateway answers it).
std::optional<response> handle(const request& r, const context& c);

// The key in an Authorization header: "Bearer <key>" or "Basic base64(<user>:<key>)"; "" if none.
std::string presented_key(std::string_view authorization);

}  // namespace agifarm::dashboard
