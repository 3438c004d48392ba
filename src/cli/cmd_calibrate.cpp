// agifarm calibrate: the speed model against published llama.cpp measurements (src/calibrate/).
#include <fmt/format.h>

#include <boost/json.hpp>

#include "calibrate/calibrate.hpp"
#include "cli/commands.hpp"
#include "hw/hw.hpp"

namespace agifarm::cli {

namespace {

[[noreturn]] void fail(const error& e) {
  fmt::print(stderr, "agifarm calibrate: {}\n", e.message);
  throw CLI::RuntimeError(e.exit_code);
}

boost::json::object to_json(const calibrate::row_result& r) {
  boost::json::object o{
      {"id", r.id}, {"setup", r.setup}, {"split", std::string(calibrate::to_string(r.part))}};
  if (!r.skip.empty()) {
    o["skip"] = r.skip;
    return o;
  }
  o["outlier"] = r.outlier;
  if (r.measured_prefill > 0)
    o["prefill"] = {
        {"predicted", r.predicted_prefill}, {"measured", r.measured_prefill}, {"error", r.prefill_error()}};
  if (r.measured_decode > 0)
    o["decode"] = {
        {"predicted", r.predicted_decode}, {"measured", r.measured_decode}, {"error", r.decode_error()}};
  o["within_goal"] = r.within_goal();
  return o;
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  struct opts {
    std::string measurements;
    bool fit = false, json = false;
  };
  auto o = std::make_shared<opts>();
  auto* cmd = app.add_subcommand(
      "calibrate", "Compare the speed model with published llama.cpp measurements (fit rows, holdout rows)");
  cmd->add_option("--measurements", o->measurements,
                  "measurements file (default: data/gpu_measurements.yaml)");
  cmd->add_flag("--fit", o->fit, "refit the free constants on the fit rows first, and print them");
  cmd->add_flag("--json", o->json, "one JSON document");
  cmd->callback([o] {
    const std::string path =
        o->measurements.empty() ? (hw::data_dir() / "gpu_measurements.yaml").string() : o->measurements;
    auto rows = calibrate::load_measurements(path);
    if (!rows) fail(rows.err());
    auto cat = calibrate::load_default_catalogues();
    if (!cat) fail(cat.err());
    const auto cases = calibrate::build_cases(*rows, *cat);
    calibrate::calibration params = calibrate::default_calibration();
    if (o->fit) params = calibrate::fit(cases, params);
    const auto results = calibrate::evaluate(cases, params);
    if (o->json) {
      boost::json::array arr;
      for (const auto& r : results) arr.push_back(to_json(r));
      boost::json::object doc{{"measurements", path}, {"rows", std::move(arr)}};
      for (auto part : {calibrate::split::fit, calibrate::split::holdout}) {
        const auto s = calibrate::summarize(results, part);
        doc[std::string(calibrate::to_string(part))] = {{"rows", s.rows},
                                                        {"within_goal", s.within},
                                                        {"off_2x", s.off_2x},
                                                        {"median_abs_decode_error", s.median_abs_decode},
                                                        {"median_abs_prefill_error", s.median_abs_prefill}};
      }
      fmt::print("{}\n", boost::json::serialize(doc));
      return;
    }
    fmt::print(
        "speed model vs {} (split: FNV-1a of the row id, holdout when divisible by 3; goal: decode "
        "within ±20 %, prefill within ±30 %, none off by more than 2x)\n\n{}",
        path, calibrate::format_report(results));
    if (o->fit) fmt::print("\nfitted constants (fit rows only)\n{}", calibrate::format_params(params));
  });
}

}  // namespace agifarm::cli
