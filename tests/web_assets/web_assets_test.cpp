#include "web_assets/web_assets.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <set>
#include <string>

namespace wa = agifarm::web_assets;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST(WebAssets, UplotIsEmbeddedByteForByte) {
  for (auto [name, rel] :
       {std::pair{"uPlot.iife.min.js", "/dist/uPlot.iife.min.js"},
        std::pair{"uPlot.min.css", "/dist/uPlot.min.css"}, std::pair{"uPlot.LICENSE.txt", "/LICENSE"}}) {
    auto a = wa::find(name);
    ASSERT_TRUE(a) << name;
    std::string disk = read_file(std::string(AGIFARM_UPLOT_DIR) + rel);
    ASSERT_FALSE(disk.empty()) << rel;
    EXPECT_EQ(a->bytes, disk) << name;
  }
  EXPECT_NE(wa::find("uPlot.iife.min.js")->bytes.find("uPlot"), std::string_view::npos);
  EXPECT_EQ(wa::uplot_version(), "1.6.32");
}

TEST(WebAssets, ContentTypesAndStrongEtags) {
  EXPECT_EQ(wa::find("uPlot.iife.min.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(wa::find("uPlot.min.css")->content_type, "text/css; charset=utf-8");
  std::set<std::string_view> tags;
  for (const auto& a : wa::all()) {
    ASSERT_EQ(a.etag.size(), 34u) << a.name;  // quoted 32 hex digits, no W/
    EXPECT_EQ(a.etag.front(), '"');
    EXPECT_EQ(a.etag.back(), '"');
    tags.insert(a.etag);
  }
  EXPECT_EQ(tags.size(), wa::all().size());  // different bytes, different tags
}

TEST(WebAssets, UnknownNameIsAbsent) {
  EXPECT_FALSE(wa::find("nope.js"));
  EXPECT_FALSE(wa::find(""));
  EXPECT_FALSE(wa::find("../uPlot.min.css"));
}

TEST(WebAssets, IfNoneMatch) {
  std::string_view tag = wa::find("uPlot.min.css")->etag;
  EXPECT_TRUE(wa::etag_matches(tag, tag));
  EXPECT_TRUE(wa::etag_matches("*", tag));
  EXPECT_TRUE(wa::etag_matches(std::string("\"x\", W/") + std::string(tag), tag));
  EXPECT_FALSE(wa::etag_matches("\"other\"", tag));
  EXPECT_FALSE(wa::etag_matches("", tag));
}
