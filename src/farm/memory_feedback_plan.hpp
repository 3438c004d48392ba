// memory_feedback_plan: the stored measurements (farm/memory_feedback.hpp) applied to the planner's
// options for one plan: `agifarm plan` and `agifarm up farm.yaml` call it before plan::make_plan.
#pragma once

#include <string>
#include <vector>

#include "farm/memory_feedback.hpp"
#include "hw/hw.hpp"
#include "plan/planner.hpp"

namespace agifarm::farm {

// The device kinds a plan on `inv` can place model memory on: each GPU's llama.cpp backend (nvidia:
// CUDA, amd: ROCm) and RPC when the inventory has more than one node.
std::vector<std::string> gpu_kinds(const hw::inventory& inv);

// Sets opt.device_margin_bytes and opt.host_reserve_bytes from the observations in `path` of `models`
// (files made absolute here, as the farm stored them). The planner has one margin for every GPU: it
// becomes the largest of the kinds present (a kind with no observation keeps the current margin), so
// one unmeasured GPU kind never gets less than before. Returns the lines to show ("used measured memory
// from <file>: ..."); none when nothing applied. A file that cannot be read: one line saying so,
// options unchanged (a plan must not fail over a cache of measurements).
std::vector<std::string> apply_memory_feedback(const std::string& path, std::vector<model_ref> models,
                                               const hw::inventory& inv, plan::plan_options& opt,
                                               const margin_rule& rule = {});

}  // namespace agifarm::farm
