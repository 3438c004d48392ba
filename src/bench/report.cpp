#include "bench/report.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "web_assets/web_assets.hpp"

namespace agifarm::bench {
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

std::string ms(double s) {
  return s <= 0 ? "-" : s < 1 ? fmt::format("{:.1f}", s * 1000) : fmt::format("{:.0f}", s * 1000);
}

std::string errors_text(const pool_summary& p) {
  std::string e;
  for (const auto& [k, n] : p.errors) e += fmt::format("{}{} {}", e.empty() ? "" : ", ", n, k);
  return e.empty() ? "0" : e;
}

std::string html_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o.push_back(c);
    }
  }
  return o;
}

}  // namespace

std::string script_safe(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 1 < s.size() && (s[i + 1] == '/' || s[i + 1] == '!')) {
      o += "<\\";  // "<\/" and "<\!" mean the same inside JS strings and regexes
      continue;
    }
    o.push_back(s[i]);
  }
  return o;
}

std::string format_table(const bench_run& r) {
  std::string out = fmt::format("agifarm bench: {} workload, {} concurrent, {:.1f} s against {}\n",
                                r.workload, r.concurrency, r.sum.wall_s, r.url);
  out +=
      fmt::format("{:<16} {:>6} {:>14} {:>22} {:>22} {:>22} {:>10} {:>10}\n", "pool", "reqs", "errors",
                  "TTFT ms p50/p95/p99", "ITL ms p50/p95/p99", "e2e ms p50/p95/p99", "prompt t/s", "gen t/s");
  auto row = [&](const pool_summary& p) {
    out += fmt::format(
        "{:<16} {:>6} {:>14} {:>22} {:>22} {:>22} {:>10.1f} {:>10.1f}\n", p.pool, p.requests, errors_text(p),
        fmt::format("{}/{}/{}", ms(p.ttft.p50), ms(p.ttft.p95), ms(p.ttft.p99)),
        fmt::format("{}/{}/{}", ms(p.itl.p50), ms(p.itl.p95), ms(p.itl.p99)),
        fmt::format("{}/{}/{}", ms(p.e2e.p50), ms(p.e2e.p95), ms(p.e2e.p99)), p.prompt_tps, p.completion_tps);
  };
  for (const auto& p : r.sum.pools) row(p);
  if (r.sum.pools.size() > 1) row(r.sum.total);
  return out;
}

std::string html_report(const bench_run& r) {
  auto js = web_assets::find("uPlot.iife.min.js");
  auto css = web_assets::find("uPlot.min.css");
  std::string rows;
  auto row = [&](const pool_summary& p) {
    rows += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{} / {} / {}</td><td>{} / {} / {}</td>"
        "<td>{}</td><td>{}</td><td>{:.1f}</td><td>{:.1f}</td></tr>\n",
        html_escape(p.pool), p.requests, html_escape(errors_text(p)), ms(p.ttft.p50), ms(p.ttft.p95),
        ms(p.ttft.p99), ms(p.itl.p50), ms(p.itl.p95), ms(p.itl.p99), ms(p.e2e.p50), ms(p.e2e.p95),
        ms(p.e2e.p99), p.prompt_tokens, p.completion_tokens, p.prompt_tps, p.completion_tps);
  };
  for (const auto& p : r.sum.pools) row(p);
  if (r.sum.pools.size() > 1) row(r.sum.total);
  // The data the plots need, not every field of bench.json.
  json::object data;
  json::array pools;
  for (const auto& p : r.sum.pools) {
    json::array t, req, err, ptok, ctok;
    for (const auto& s : p.series) {
      t.push_back(s.t);
      req.push_back(s.requests);
      err.push_back(s.errors);
      ptok.push_back(s.prompt_tokens);
      ctok.push_back(s.completion_tokens);
    }
    json::array ttft, e2e, start;
    for (const auto& x : r.records)
      if (x.pool == p.pool && x.ok) {
        start.push_back(x.start_s);
        ttft.push_back(x.ttft_s >= 0 ? x.ttft_s * 1000 : 0);
        e2e.push_back((x.end_s - x.start_s) * 1000);
      }
    pools.push_back(json::object{{"pool", p.pool},
                                 {"t", t},
                                 {"requests", req},
                                 {"errors", err},
                                 {"prompt_tokens", ptok},
                                 {"completion_tokens", ctok},
                                 {"start", start},
                                 {"ttft_ms", ttft},
                                 {"e2e_ms", e2e}});
  }
  data["pools"] = std::move(pools);
  std::string page = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>agifarm bench )" +
                     html_escape(r.workload) + " " + html_escape(r.started_utc) + R"(</title>
<style>)" + (css ? script_safe(css->bytes) : std::string()) +
                     R"(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:16px}
.note{color:#666;font-size:13px}</style></head><body>
<h1>agifarm bench</h1>
<p>)" +
                     fmt::format(
                         "<b>{}</b> workload, {} concurrent streams, {:.1f} s measured against "
                         "<code>{}</code>, started {}, seed {}.",
                         html_escape(r.workload), r.concurrency, r.sum.wall_s, html_escape(r.url),
                         html_escape(r.started_utc), r.seed) +
                     R"(</p>
<table><tr><th>pool</th><th>requests</th><th>errors</th><th>TTFT ms p50/p95/p99</th><th>ITL ms p50/p95/p99</th>
<th>end-to-end ms p50/p95/p99</th><th>prompt tokens</th><th>generated tokens</th><th>prompt tok/s</th><th>generated tok/s</th></tr>
)" + rows + R"(</table>
<p class="note">TTFT: request sent to the first chunk with generated text. ITL: time between successive chunks with text.
Tokens per second: tokens of finished requests over the measured wall time. See docs/bench.md.</p>
<div class="plots" id="plots"></div>
<script>)" + (js ? script_safe(js->bytes) : std::string()) +
                     R"(</script>
<script>
const data = )" + script_safe(json::serialize(data)) +
                     R"(;
const colors = ["#1f77b4","#d62728","#2ca02c","#9467bd","#ff7f0e","#8c564b"];
const width = Math.min(560, window.innerWidth - 40);
function plot(title, xs, series, xlabel, ylabel, points) {
  const div = document.createElement("div");
  document.getElementById("plots").appendChild(div);
  const opts = {title, width, height: 260, scales: {x: {time: false}},
    axes: [{label: xlabel}, {label: ylabel}],
    series: [{label: xlabel}].concat(series.map((s, i) => ({label: s.label, stroke: colors[i % colors.length],
      width: points ? 0 : 2, points: {show: !!points, size: 5, fill: colors[i % colors.length]}})))};
  new uPlot(opts, [xs].concat(series.map(s => s.values)), div);
}
for (const p of data.pools) {
  plot(p.pool + ": tokens per second", p.t, [{label: "generated", values: p.completion_tokens},
       {label: "prompt", values: p.prompt_tokens}], "s", "tokens/s");
  plot(p.pool + ": requests finished per second", p.t, [{label: "requests", values: p.requests},
       {label: "errors", values: p.errors}], "s", "requests/s");
  const order = p.start.map((_, i) => i).sort((a, b) => p.start[a] - p.start[b]);
  plot(p.pool + ": latency of each request by send time", order.map(i => p.start[i]),
       [{label: "TTFT ms", values: order.map(i => p.ttft_ms[i])}, {label: "end-to-end ms", values: order.map(i => p.e2e_ms[i])}],
       "s", "ms", true);
}
</script></body></html>
)";
  return page;
}

result<std::string> write_report(const bench_run& r, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(fmt::format("--out {}: cannot create the directory: {}", dir, ec.message()), 1);
  auto write = [&](const std::string& name, const std::string& text) -> status {
    auto p = (fs::path(dir) / name).string();
    auto tmp = p + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      if (!f || !(f << text) || !f.flush()) return make_error(fmt::format("cannot write {}", tmp), 1);
    }
    fs::rename(tmp, p, ec);
    if (ec) return make_error(fmt::format("cannot write {}: {}", p, ec.message()), 1);
    return status::success();
  };
  if (auto s = write("bench.json", json::serialize(to_json(r)) + "\n"); !s) return s.err();
  if (auto s = write("report.html", html_report(r)); !s) return s.err();
  return (fs::path(dir) / "report.html").string();
}

}  // namespace agifarm::bench
