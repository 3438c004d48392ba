#include "dashboard/dashboard.hpp"

#include <gtest/gtest.h>

#include <string>

namespace agifarm::dashboard {
namespace {

std::string header(const response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

context open_farm() {
  context c;
  c.status_json = [] { return std::string(R"({"running":true,"backends":[]})"); };
  return c;
}

TEST(dashboard, serves_the_page_its_files_and_uplot) {
  auto c = open_farm();
  auto page = handle({"GET", "/", "", ""}, c);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("/ui/uPlot.iife.min.js"), std::string::npos);
  EXPECT_NE(page->body.find("/ui/app.js"), std::string::npos);
  for (std::string f :
       {"/ui/app.js", "/ui/app.css", "/ui/uPlot.iife.min.js", "/ui/uPlot.min.css", "/ui/uPlot.LICENSE.txt"}) {
    auto r = handle({"GET", f, "", ""}, c);
    ASSERT_TRUE(r) << f;
    EXPECT_EQ(r->status, 200) << f;
    EXPECT_FALSE(r->body.empty()) << f;
    EXPECT_EQ(header(*r, "ETag").size(), 34u) << f;
  }
  EXPECT_NE(handle({"GET", "/ui/app.js?v=2", "", ""}, c)->body.find("/agifarm/status"), std::string::npos);
  EXPECT_EQ(handle({"GET", "/ui/app.css", "", ""}, c)->content_type, "text/css; charset=utf-8");
}

TEST(dashboard, etag_gives_304_and_head_has_no_body) {
  auto c = open_farm();
  auto r = handle({"GET", "/ui/app.js", "", ""}, c);
  std::string tag = header(*r, "ETag");
  auto again = handle({"GET", "/ui/app.js", tag, ""}, c);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());
  EXPECT_EQ(handle({"GET", "/ui/app.js", "\"stale\"", ""}, c)->status, 200);
  auto head = handle({"HEAD", "/", "", ""}, c);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
}

TEST(dashboard, status_json_comes_from_the_context) {
  auto c = open_farm();
  auto r = handle({"GET", "/agifarm/status", "", ""}, c);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type, "application/json");
  EXPECT_EQ(r->body, R"({"running":true,"backends":[]})");
  EXPECT_EQ(header(*r, "Cache-Control"), "no-store");
}

TEST(dashboard, other_paths_and_methods) {
  auto c = open_farm();
  EXPECT_FALSE(handle({"GET", "/v1/models", "", ""}, c));
  EXPECT_FALSE(handle({"GET", "/metrics", "", ""}, c));
  EXPECT_FALSE(owns("/health"));
  EXPECT_TRUE(owns("/?x=1"));
  auto missing = handle({"GET", "/ui/nope.js", "", ""}, c);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("/ui/nope.js"), std::string::npos);
  EXPECT_EQ(handle({"GET", "/ui/../index.html", "", ""}, c)->status, 404);
  auto post = handle({"POST", "/", "", ""}, c);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(header(*post, "Allow"), "GET, HEAD");
}

TEST(dashboard, keys_are_asked_for_when_the_farm_has_them) {
  auto c = open_farm();
  c.key_ok = [](std::string_view k) { return k == "sk-farm"; };
  auto r = handle({"GET", "/", "", ""}, c);
  EXPECT_EQ(r->status, 401);
  EXPECT_NE(header(*r, "WWW-Authenticate").find("Basic"), std::string::npos);
  EXPECT_EQ(handle({"GET", "/agifarm/status", "", "Bearer wrong"}, c)->status, 401);
  EXPECT_EQ(handle({"GET", "/agifarm/status", "", "Bearer sk-farm"}, c)->status, 200);
  // "user:sk-farm" in base64, as a browser sends it after its login prompt
  EXPECT_EQ(handle({"GET", "/", "", "Basic dXNlcjpzay1mYXJt"}, c)->status, 200);
  EXPECT_EQ(handle({"GET", "/", "", "Basic !!!"}, c)->status, 401);
  EXPECT_EQ(presented_key("basic OnNrLWZhcm0="), "sk-farm");  // ":sk-farm"
  EXPECT_EQ(presented_key("Token x"), "");
  EXPECT_EQ(presented_key(""), "");
}

}  // namespace
}  // namespace agifarm::dashboard
