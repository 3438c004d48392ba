#include "plan/strategy.hpp"

#include <array>
#include <utility>

namespace agifarm::plan {

namespace {
constexpr std::array<std::pair<strategy, std::string_view>, 6> k_names{{
    {strategy::replica, "replica"},
    {strategy::shard, "shard"},
    {strategy::shard_rpc, "shard_rpc"},
    {strategy::expert_offload, "expert_offload"},
    {strategy::cpu, "cpu"},
    {strategy::hybrid, "hybrid"},
}};
}  // namespace

std::string_view to_string(strategy s) {
  for (const auto& [k, name] : k_names)
    if (k == s) return name;
  return "";
}

std::optional<strategy> parse_strategy(std::string_view name) {
  for (const auto& [k, n] : k_names)
    if (n == name) return k;
  return std::nullopt;
}

}  // namespace agifarm::plan
