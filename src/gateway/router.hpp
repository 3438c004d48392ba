// router: maps a request's `model` (a pool name or a role alias) to a pool. Built once from the
// config; immutable afterwards, so safe to share between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/gateway.hpp"

namespace agifarm::gateway {

class router {
 public:
  explicit router(const config& c);
  // Pool index for a model name or alias. An empty name routes to the only pool when there is one.
  std::optional<std::size_t> find(std::string_view model) const;
  // "The model 'x' does not exist. Available: qwen3-8b (aliases: fast, code), qwen3-32b (aliases: think)"
  std::string unknown_model_message(std::string_view model) const;
  // GET /v1/models body: every pool and every alias, OpenAI's list shape.
  std::string models_json() const;
  std::size_t pool_count() const { return pools_.size(); }
  const std::string& pool_name(std::size_t i) const { return pools_[i].name; }

 private:
  struct entry {
    std::string name;
    std::vector<std::string> aliases;
  };
  std::vector<entry> pools_;
  std::unordered_map<std::string, std::size_t> by_name_;
};

}  // namespace agifarm::gateway
