// memory_feedback: what llama-server really allocated, remembered per model and device kind in the
// farm's state directory, and the rule that turns it into the next plan's memory margins.
//
//   <state_dir>/measured-memory.json
//     {"version":1,"observations":[{"model","model_file","device_kind","device","backend",
//                                   "predicted_bytes","measured_bytes","wall"}, ...]}
//
// A farm writes an observation when a backend's buffers are first read after a start (one per model,
// model file and device kind: the newest replaces the older, the device of that kind whose prediction
// was shortest stands for it). `agifarm plan` and `agifarm up farm.yaml` read the file of their state
// directory and size the planner's margins from it (margins_from below; docs/dashboard.md):
//
//   GPU kinds (CUDA, ROCm, RPC, ...):  margin = min(cap, max(floor, shortfall + safety))
//   host:                              reserve = default reserve + shortfall   (never less: it is the OS's)
//
// where shortfall is the sum, over the plan's models measured on that kind, of max(0, measured -
// predicted). A prediction that was right shrinks the GPU margin to the floor; one that was short grows
// it by what was missing. Pure functions except load/save/remember (files); parse never throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::plan {
struct deployment;
}  // namespace agifarm::plan

namespace agifarm::farm {

struct backend_record;
struct device_memory_record;

struct memory_observation {
  std::string model;        // the farm's model name (pool name)
  std::string model_file;   // absolute path of its GGUF ("" when not known)
  std::string device_kind;  // llama.cpp device name without index / address: CUDA, ROCm, RPC, host, ...
  std::string device;       // the device it was measured on (CUDA0, RPC0[127.0.0.1:50052], host)
  std::string backend;      // the backend that measured it
  std::uint64_t predicted_bytes = 0;  // model + KV + compute on that device, as the plan predicted
  std::uint64_t measured_bytes = 0;   // as llama-server printed it at load
  std::int64_t wall = 0;              // unix seconds of the measurement
  std::int64_t diff_bytes() const {
    return static_cast<std::int64_t>(measured_bytes) - static_cast<std::int64_t>(predicted_bytes);
  }
};

struct memory_feedback {
  std::vector<memory_observation> observations;
};

// "CUDA0" -> "CUDA", "RPC0[127.0.0.1:50052]" -> "RPC", "host" -> "host", "Vulkan1" -> "Vulkan".
std::string device_kind(std::string_view llama_device);

// Errors name `where` and the field ("memory.json: observations[2].measured_bytes: ...").
result<memory_feedback> parse_memory_feedback(std::string_view text, const std::string& where);
std::string to_json_text(const memory_feedback& f);

// Adds o, replacing an observation of the same model, model file and device kind.
void note(memory_feedback& f, memory_observation o);

// One backend's observations: predicted devices matched to measured ones by name before '[', one per
// device kind (the device with the largest measured - predicted). Empty without both.
std::vector<memory_observation> observations_of(const std::string& model, const std::string& model_file,
                                                const std::string& backend,
                                                const std::vector<device_memory_record>& predicted,
                                                const std::vector<device_memory_record>& measured,
                                                std::int64_t wall);

struct margin_rule {
  std::uint64_t floor_bytes = 512ull << 20;   // a GPU margin never shrinks below this
  std::uint64_t safety_bytes = 256ull << 20;  // added to what the prediction missed
  std::uint64_t cap_bytes = 8ull << 30;       // nor grows beyond this (a wild measurement stays bounded)
};

// A model of the plan being made: its name and (absolute) file. An observation belongs to it when both
// files are known and equal, else when the names are equal.
struct model_ref {
  std::string name;
  std::string file;
};

struct kind_margin {
  std::string device_kind;
  std::uint64_t shortfall_bytes = 0;  // sum of max(0, measured - predicted) of the used observations
  std::uint64_t margin_bytes = 0;     // GPU kinds: the rule's margin; host: the reserve (default + shortfall)
  std::vector<memory_observation> used;
};

// The margins the rule gives, per device kind that has an observation of one of `models`.
std::vector<kind_margin> margins_from(const memory_feedback& f, const std::vector<model_ref>& models,
                                      std::uint64_t default_host_reserve, const margin_rule& rule = {});

// Human line: "model tiny on host measured +3.2 MiB vs predicted (81.0 -> 84.2 MiB)".
std::string describe(const memory_observation& o);

// ---- files ------------------------------------------------------------------------------------------

// <state_dir>/measured-memory.json
std::string memory_feedback_file(const std::string& state_dir);
// A missing file is an empty feedback; a broken one an error naming it.
result<memory_feedback> load_memory_feedback(const std::string& path);
status save_memory_feedback(const std::string& path, const memory_feedback& f);  // atomic (temp + rename)

// Called with every state write of a running farm: for each llama-server backend whose buffers were
// read since its process started, notes its observations in `path` once per process start. Returns
// the lines worth logging (what was stored, or why the file could not be written).
std::vector<std::string> remember_measured_memory(const std::string& path, const plan::deployment& d,
                                                  const std::vector<backend_record>& records);

}  // namespace agifarm::farm
