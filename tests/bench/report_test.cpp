// Unit tests of the report: the HTML is one self-contained file with uPlot inlined and the data in
// it, script text cannot end its element early, and the files are written.
#include "bench/report.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "web_assets/web_assets.hpp"

namespace agifarm::bench {
namespace {

bench_run sample() {
  bench_run r;
  r.url = "http://127.0.0.1:1";
  r.workload = "mix";
  r.concurrency = 2;
  r.started_utc = "2026-12-06T00:00:00Z";
  request_record a;
  a.pool = "tiny</script><b>";
  a.ok = true;
  a.start_s = 0.1;
  a.end_s = 0.9;
  a.ttft_s = 0.2;
  a.itl_s = {0.01};
  a.prompt_tokens = 30;
  a.completion_tokens = 8;
  request_record b = a;
  b.ok = false;
  b.error = "http_503";
  b.prompt_tokens = 0;
  b.completion_tokens = 0;
  r.records = {a, b};
  r.sum = summarize(r.records, 2.0);
  return r;
}

TEST(bench_report, html_inlines_uplot_and_the_data_and_escapes_names) {
  auto html = html_report(sample());
  auto js = web_assets::find("uPlot.iife.min.js");
  ASSERT_TRUE(js);
  EXPECT_NE(html.find(script_safe(js->bytes.substr(0, 200))), std::string::npos) << "uPlot is not inlined";
  EXPECT_EQ(html.find("src=\"http"), std::string::npos) << "the page must not fetch anything";
  EXPECT_NE(html.find("new uPlot("), std::string::npos);
  EXPECT_NE(html.find("\"completion_tokens\":[8,0]"), std::string::npos) << "the series are in the page";
  EXPECT_EQ(html.find("tiny</script>"), std::string::npos) << "a pool name must not close the script element";
  EXPECT_NE(html.find("tiny&lt;/script&gt;&lt;b&gt;"), std::string::npos) << "pool name escaped in the table";
  EXPECT_NE(html.find("1 http_503"), std::string::npos);
}

TEST(bench_report, script_safe_breaks_closing_tags_only) {
  EXPECT_EQ(script_safe("a</script>b<!--c<d"), "a<\\/script>b<\\!--c<d");
}

TEST(bench_report, table_and_files) {
  auto r = sample();
  auto t = format_table(r);
  EXPECT_NE(t.find("TTFT ms p50/p95/p99"), std::string::npos);
  EXPECT_NE(t.find("200.0/200.0/200.0"), std::string::npos) << t;
  auto dir = std::filesystem::path(AGIFARM_BINARY_DIR) / "test-work" / "bench-report-unit";
  std::filesystem::remove_all(dir);
  auto p = write_report(r, dir.string());
  ASSERT_TRUE(p) << p.err().message;
  EXPECT_TRUE(std::filesystem::exists(dir / "report.html"));
  std::ifstream f(dir / "bench.json");
  std::string j((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto v = boost::json::parse(j).as_object();
  EXPECT_EQ(v.at("requests").as_array().size(), 2u);
  EXPECT_EQ(v.at("total").as_object().at("prompt_tokens").to_number<std::uint64_t>(), 30u);
  auto bad = write_report(r, "/proc/no/such/dir");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().message.find("/proc/no/such/dir"), std::string::npos);
}

}  // namespace
}  // namespace agifarm::bench
