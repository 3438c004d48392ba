// report: a bench run as a terminal table, as the JSON file, and as one self-contained HTML page with
// plots (the uPlot library from web_assets, inlined: the page opens offline, from a file, anywhere).
// Pure functions; thread-safe.
#pragma once

#include <string>

#include "bench/driver.hpp"

namespace agifarm::bench {

// Per pool: requests, errors by kind, TTFT / ITL / e2e p50/p95/p99, prompt and generated tokens/s.
std::string format_table(const bench_run& r);
std::string html_report(const bench_run& r);
// Writes <dir>/bench.json and <dir>/report.html (creating dir). Errors name the path.
result<std::string> write_report(const bench_run& r, const std::string& dir);

// Text placed inside <script>: "</" cannot close the element early.
std::string script_safe(std::string_view s);

}  // namespace agifarm::bench
