#include "dashboard/dashboard.hpp"

#include <span>

#include "web_assets/web_assets.hpp"

namespace agifarm::dashboard {
namespace detail {
std::span<const web_assets::asset> page();  // generated at build time from src/dashboard/page/
}

namespace {

std::string_view path_of(std::string_view target) {
  auto q = target.find_first_of("?#");
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::optional<web_assets::asset> page_asset(std::string_view name) {
  for (const auto& a : detail::page())
    if (a.name == name) return a;
  return std::nullopt;
}

std::optional<web_assets::asset> asset_for(std::string_view path) {
  if (path == "/" || path == "/index.html") return page_asset("index.html");
  if (!path.starts_with("/ui/")) return std::nullopt;
  std::string_view name = path.substr(4);
  if (name == "index.html") return std::nullopt;  // the page itself is at /
  if (auto a = page_asset(name)) return a;
  return web_assets::find(name);
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = base64_value(c);
    if (v < 0) return std::nullopt;
    buf = (buf << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xff);
    }
  }
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != prefix[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool owns(std::string_view target) {
  auto p = path_of(target);
  return p == "/" || p == "/index.html" || p.starts_with("/ui/") || p == "/agifarm/status";
}

std::string presented_key(std::string_view authorization) {
  auto a = trim(authorization);
  if (starts_with_ci(a, "bearer ")) return std::string(trim(a.substr(7)));
  if (starts_with_ci(a, "basic ")) {
    auto decoded = base64_decode(trim(a.substr(6)));
    if (!decoded) return {};
    auto colon = decoded->find(':');
    return colon == std::string::npos ? std::string() : decoded->substr(colon + 1);
  }
  return {};
}

std::optional<response> handle(const request& r, const context& c) {
  if (!owns(r.target)) return std::nullopt;
  const std::string_view path = path_of(r.target);
  response out;
  const bool head = r.method == "HEAD";
  if (r.method != "GET" && !head) {
    out.status = 405;
    out.content_type = "text/plain; charset=utf-8";
    out.body =
        "Method " + std::string(r.method.substr(0, 20)) + " is not allowed on " + std::string(path) + ".\n";
    out.headers.emplace_back("Allow", "GET, HEAD");
    return out;
  }
  if (c.key_ok) {
    std::string key = presented_key(r.authorization);
    if (key.empty() || !c.key_ok(key)) {
      out.status = 401;
      out.content_type = "text/plain; charset=utf-8";
      out.body =
          "This farm has API keys: sign in with one (any user name, the key as the password), "
          "or send Authorization: Bearer <key>.\n";
      out.headers.emplace_back("WWW-Authenticate", "Basic realm=\"agifarm dashboard\", charset=\"UTF-8\"");
      out.headers.emplace_back("Cache-Control", "no-store");
      if (head) out.body.clear();
      return out;
    }
  }
  if (path == "/agifarm/status") {
    out.content_type = "application/json";
    out.body = c.status_json ? c.status_json() : std::string(R"({"running":false})");
    out.headers.emplace_back("Cache-Control", "no-store");
    if (head) out.body.clear();
    return out;
  }
  auto a = asset_for(path);
  if (!a) {
    out.status = 404;
    out.content_type = "text/plain; charset=utf-8";
    out.body = "No dashboard file " + std::string(path.substr(0, 200)) + ".\n";
    if (head) out.body.clear();
    return out;
  }
  out.headers.emplace_back("ETag", std::string(a->etag));
  // the page and its files revalidate (a new agifarm binary brings new ones), cheaply with the ETag
  out.headers.emplace_back("Cache-Control", "no-cache");
  out.content_type = std::string(a->content_type);
  if (!r.if_none_match.empty() && web_assets::etag_matches(r.if_none_match, a->etag)) {
    out.status = 304;
    return out;
  }
  if (!head) out.body = std::string(a->bytes);
  return out;
}

}  // namespace agifarm::dashboard
