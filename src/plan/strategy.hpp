// strategy: the ways the planner places a model, as an enum. The plan document and the deployment
// keep the names (to_string) because they are the serialised form; code that decides by strategy
// parses them once (parse_strategy) instead of comparing strings. Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string_view>

namespace agifarm::plan {

enum class strategy {
  replica,         // a copy per GPU
  shard,           // layer (or row) split over the GPUs of one node
  shard_rpc,       // layer split across nodes through ggml-rpc-server
  expert_offload,  // MoE experts of some layers in system RAM
  cpu,             // the whole model in system RAM
  hybrid,          // several models on one farm
};

std::string_view to_string(strategy s);
std::optional<strategy> parse_strategy(std::string_view name);

}  // namespace agifarm::plan
