#pragma once
// Static web files built into the binary at build time (src/web_assets/embed.cmake): the vendored uPlot
// charting library (npm `uplot`, pinned and integrity-checked by scripts/setup.sh). Nothing is read from
// disk or the network at run time.
#include <optional>
#include <span>
#include <string_view>

namespace agifarm::web_assets {

struct asset {
  std::string_view name;          // e.g. "uPlot.iife.min.js"
  std::string_view bytes;         // the file, byte for byte
  std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  std::string_view etag;          // strong ETag, quoted: "\"<32 hex digits of SHA-256>\""
};

// The vendored asset of that name: "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE.txt".
std::optional<asset> find(std::string_view name);
// Every vendored asset.
std::span<const asset> all();
// The pinned uPlot version embedded, e.g. "1.6.32".
std::string_view uplot_version();

// true when an If-None-Match header value matches the asset's ETag (a list, `*`, or weak forms)
bool etag_matches(std::string_view if_none_match, std::string_view etag);

namespace detail {
std::span<const asset> vendored();  // generated at build time
}

}  // namespace agifarm::web_assets
