#include "web_assets/web_assets.hpp"

namespace agifarm::web_assets {

std::optional<asset> find(std::string_view name) {
  for (const auto& a : detail::vendored())
    if (a.name == name) return a;
  return std::nullopt;
}

std::span<const asset> all() { return detail::vendored(); }

std::string_view uplot_version() { return AGIFARM_UPLOT_VERSION; }

bool etag_matches(std::string_view header, std::string_view etag) {
  // RFC 9110 13.1.2: weak comparison for If-None-Match; "*" matches any current representation
  size_t pos = 0;
  while (pos < header.size()) {
    size_t comma = header.find(',', pos);
    if (comma == std::string_view::npos) comma = header.size();
    std::string_view item = header.substr(pos, comma - pos);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == "*") return true;
    if (item.starts_with("W/")) item.remove_prefix(2);
    if (item == etag) return true;
    pos = comma + 1;
  }
  return false;
}

}  // namespace agifarm::web_assets
