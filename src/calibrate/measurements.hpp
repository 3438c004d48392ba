// measurements: the rows of data/gpu_measurements.yaml (docs/measurements.md) as `agifarm calibrate`
// reads them: id, setup, the measured prefill / decode tokens/s, and the `calibrate:` block that says
// how to replay the row with agifarm's models (format in the file's header and docs/measurements.md).
//
// Contract: parse_measurements takes YAML text (any bytes) and a name for messages; every error names
// name:line:column and the key (exit code 2), never a crash or an escaping exception. Plain data;
// thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::calibrate {

// How to replay one row (its `calibrate:` block).
struct replay {
  std::string model;              // data/models.yaml id
  std::string quant;              // quant mix ("Q4_K_M"); what the row's file approximates
  std::vector<std::string> gpus;  // data/gpus.yaml ids, llama.cpp device order (RPC devices first)
  std::vector<int> nodes;         // machine of each GPU: 0 = the one running llama.cpp (empty: all 0)
  std::string args;               // placement flags as llama-server takes them ("-ngl 99 --n-cpu-moe 26")
  int prompt = 512;               // prefill test: prompt tokens (pp512)
  int gen = 128;                  // decode test: generated tokens (tg128)
  int depth = 0;                  // tokens in the context before decoding (server rows: the prompt)
  std::string cpu;                // data/cpus.yaml id of the machine running llama.cpp ("" = default host)
  double network_gbit = 0;        // between machines (rpc rows)
  double network_latency_ms = 0;  // one way; 0 = agifarm's default for the link
  bool use_prefill = true, use_decode = true;  // false: that figure is not comparable (stated in `why`)
  std::string outlier;                         // non-empty: reported, never fitted, not counted in the goal
  std::string skip;                            // non-empty: not replayed, the reason
  std::string why;                             // a note on the approximations made
};

struct measurement {
  std::string id, setup, model_name, source;
  std::string date;                        // as written ("2024-05", "2025-10-18"), "" when null
  double prefill_tps = 0, decode_tps = 0;  // 0: not measured
  std::optional<replay> calib;
  int line = 0;
};

result<std::vector<measurement>> parse_measurements(std::string_view yaml_text, std::string_view name);
result<std::vector<measurement>> load_measurements(const std::string& path);

}  // namespace agifarm::calibrate
