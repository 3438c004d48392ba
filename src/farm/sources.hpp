// sources: where `agifarm up` gets its deployment (plan/deployment.hpp) from.
//
//   --plan plan.json     the planner's document ("deployment" object) or a bare deployment object
//   farm.yaml            planned_deployment(): the planner (plan/planner.hpp) on the farm file's
//                        inventory (or this machine, discovered) and models/roles: its chosen deployment.
//   farm.yaml with `strategy: replica` (or a build without the planner): replica_deployment(): every
//                        model gets `replicas` llama-server copies with -c (max role ctx x agents) and
//                        -np (sum of agents) plus its `args`; its roles become the aliases of its pool.
//                        Other forced strategies need a plan (--plan) and are refused with that advice.
//   (nothing)            demo_deployment(): the embedded default, two replicas of the tiny model.
//
// Pure functions (demo model synthesis aside); thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"
#include "farm/farm_file.hpp"
#include "plan/deployment.hpp"
#include "plan/plan_document.hpp"

namespace agifarm::farm {

inline constexpr const char* k_demo_model_name = "tiny-qwen3";

result<plan::deployment> deployment_from_plan_file(const std::string& path);
// The same from text; `where` names it in errors.
result<plan::deployment> deployment_from_plan_text(std::string_view text, const std::string& where);
result<plan::deployment> replica_deployment(const farm_file& f);
bool planner_available();
// notes: human lines worth showing (discovery notes, the planner's reasons). Exit code 3: nothing fits.
// memory_file: the farm's measured memory (farm/memory_feedback.hpp), sizing the planner's margins
// ("" = none); document: when set, receives the plan document (farms without on-demand models).
result<plan::deployment> planned_deployment(const farm_file& f, std::vector<std::string>& notes,
                                            const std::string& memory_file = "",
                                            plan::plan_document* document = nullptr);
// The whole plan document the planner makes for a farm file (its inventory, or this machine when it
// names none); what `agifarm emit --farm` writes files from. No fitting strategy: exit code 3.
result<plan::plan_document> plan_farm_file(const farm_file& f, std::vector<std::string>& notes,
                                           const std::string& memory_file = "");
plan::deployment demo_deployment(const std::string& model_file);
// Fills in the planner's memory and speed predictions for backends that have none and run on this
// machine's CPU (the demo and `strategy: replica` deployments), so `up` and `status` can show them.
void predict_on_this_machine(plan::deployment& d);

// Writes the tiny demo model to path unless a file is already there (atomic: temp file + rename).
// Returns true if it was written now.
result<bool> ensure_demo_model(const std::string& path);

// Checks a deployment is runnable here: backends present and local, pools name known llama-server
// backends. (A missing model file is not refused here: that backend fails with llama-server's own
// message while the rest of the farm runs.) Errors name the backend or pool.
// this_machine: every backend local; multi_node: backends anywhere (the nodes were split already);
// node_part: a node daemon's part (no pools: the controller's gateway serves them).
enum class runnable_check { this_machine, multi_node, node_part };
status check_runnable(const plan::deployment& d, runnable_check mode = runnable_check::this_machine);

}  // namespace agifarm::farm
