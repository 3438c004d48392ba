// calibrate: the speed model (plan/speed_model.hpp) against published llama.cpp measurements
// (data/gpu_measurements.yaml, docs/measurements.md).
//
// Each measurement row may carry a `calibrate:` block saying how to replay it: the catalogue model and
// quant mix (data/models.yaml), the GPUs in llama.cpp's device order (data/gpus.yaml ids) and the
// machine each sits on, the llama-server flags that place the model (-ngl, -sm, --n-cpu-moe, -ot, -ub),
// the test (prompt and generated tokens, depth), the host CPU (data/cpus.yaml) and the network. A row
// without one, or with `skip:`, is listed with its reason and never evaluated.
//
// Rows are split deterministically into fit and holdout: FNV-1a (32-bit) of the row id, holdout when
// the hash is divisible by 3 (split_of). The fit changes only speed_params (never the data) and looks
// only at fit rows; the goal of issue 15 is checked on holdout rows: decode within ±20 %, prefill
// within ±30 % for at least 80 % of them, none off by more than 2x.
//
// Contract: parse_measurements takes YAML text and a name for messages; every error names
// name:line:column (exit code 2), never a crash. build_cases needs the model and GPU catalogues; a row
// it cannot replay becomes a case with `skip` set, not an error. Everything else is a pure function
// of its inputs; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "calibrate/measurements.hpp"
#include "common/result.hpp"
#include "hw/hw.hpp"
#include "plan/memory_model.hpp"
#include "plan/speed_model.hpp"
#include "synth/shape_catalogue.hpp"

namespace agifarm::calibrate {

enum class split { fit, holdout };
split split_of(std::string_view id);  // FNV-1a 32 of the id; holdout when divisible by 3
std::string_view to_string(split s);

// A replayable row: its shape, placement and the speed model's inputs for the prefill and decode tests.
struct replay_case {
  const measurement* row = nullptr;
  std::string skip;  // non-empty: not replayed (the reason)
  std::shared_ptr<const plan::model_shape> shape;
  std::shared_ptr<const plan::memory_estimate> placement;
  plan::speed_input prefill, decode;  // shape/placement pointers into the two above
  bool legacy = false;                // a build before May 2024 (is_legacy_build of the row's date)
};

struct catalogues {
  std::vector<synth::model_entry> models;
  hw::catalogue hardware;  // GPUs and CPUs
};
result<catalogues> load_default_catalogues();

// One case per row (the rows must outlive the cases).
std::vector<replay_case> build_cases(const std::vector<measurement>& rows, const catalogues& cat);

struct row_result {
  std::string id, setup;
  split part = split::fit;
  bool outlier = false;
  std::string skip;
  double predicted_prefill = 0, measured_prefill = 0;  // measured 0: not compared
  double predicted_decode = 0, measured_decode = 0;
  // predicted / measured - 1 (0 when not compared)
  double prefill_error() const { return measured_prefill > 0 ? predicted_prefill / measured_prefill - 1 : 0; }
  double decode_error() const { return measured_decode > 0 ? predicted_decode / measured_decode - 1 : 0; }
  bool within_goal() const;  // decode within ±20 %, prefill within ±30 % (those compared)
  bool off_2x() const;       // any compared figure off by more than 2x
};

// What is fitted: the speed model's constants, and two factors for rows of llama.cpp builds before
// May 2024 (before CUDA graphs and the quantized-matmul rewrites), which are not today's software:
// their per-layer overhead and their prefill efficiency relative to today's. Those rows are also
// replayed on the dequantize-to-F16 path (speed_params::dequant_to_f16), which is physics, not a
// fitted factor. Plans use `speed` only.
struct calibration {
  plan::speed_params speed;
  double legacy_overhead = 1.0;
  double legacy_flops = 1.0;
};
calibration default_calibration();            // default_speed_params() and the fitted legacy factors
bool is_legacy_build(std::string_view date);  // "2023-12", "2024-03" -> true; "2024-05" -> false

std::vector<row_result> evaluate(const std::vector<replay_case>& cases, const calibration& params);

struct summary {
  int rows = 0, within = 0, off_2x = 0;  // compared rows of the part, outliers left out
  double share_within() const { return rows ? static_cast<double>(within) / rows : 0; }
  double median_abs_decode = 0, median_abs_prefill = 0;
};
summary summarize(const std::vector<row_result>& results, split part);

// Fits the free constants of `start` on the fit rows (coordinate descent on the squared log error of
// every compared figure) and returns them.
calibration fit(const std::vector<replay_case>& cases, const calibration& start);

// The report: one line per row, fit and holdout summaries, skipped rows with their reasons.
std::string format_report(const std::vector<row_result>& results);
// The fitted constants as C++ initialisers for default_speed_params() and a table for docs.
std::string format_params(const calibration& p);

}  // namespace agifarm::calibrate
