// sources: where `agifarm up` gets its deployment (plan/deployment.hpp) from.
//
//   --plan plan.json     the planner's document ("deployment" object) or a bare deployment object
//   farm.yaml            replica_deployment(): until the planner's library plans a farm file, every
//                        model gets `replicas` llama-server copies with -c (max role ctx x agents) and
//                        -np (sum of agents); its roles become the aliases of its pool. Strategies other
//                        than replica need a plan (--plan) and are refused with that advice.
//   (nothing)            demo_deployment(): the embedded default, two replicas of the tiny model.
//
// Pure functions (demo model synthesis aside); thread-safe.
#pragma once

#include <string>

#include "common/result.hpp"
#include "farm/farm_file.hpp"
#include "plan/deployment.hpp"

namespace agifarm::farm {

inline constexpr const char* k_demo_model_name = "tiny-qwen3";

result<plan::deployment> deployment_from_plan_file(const std::string& path);
result<plan::deployment> replica_deployment(const farm_file& f);
plan::deployment demo_deployment(const std::string& model_file);

// Writes the tiny demo model to path unless a file is already there (atomic: temp file + rename).
// Returns true if it was written now.
result<bool> ensure_demo_model(const std::string& path);

// Checks a deployment is runnable here: backends present and local, pools name known llama-server
// backends. (A missing model file is not refused here: that backend fails with llama-server's own
// message while the rest of the farm runs.) Errors name the backend or pool.
status check_runnable(const plan::deployment& d);

}  // namespace agifarm::farm
