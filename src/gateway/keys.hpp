// keys: API key authentication, per-key model allow-lists and request rates.
// authenticate() compares the presented key against every configured key in constant time (no early
// exit on the first differing byte, no early exit on the first matching key). Keys are never logged;
// only key names appear in usage and metrics. Thread-safe (rate buckets behind a mutex).
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/gateway.hpp"

namespace agifarm::gateway {

bool constant_time_equal(std::string_view a, std::string_view b);

class key_store {
 public:
  explicit key_store(std::vector<api_key_config> keys);
  bool enabled() const { return !keys_.empty(); }
  // authorization: the Authorization header ("Bearer <key>"); x_api_key: the x-api-key header.
  // Returns the key index, or nullopt when missing or wrong.
  std::optional<std::size_t> authenticate(std::string_view authorization, std::string_view x_api_key) const;
  const std::string& name(std::size_t k) const { return keys_[k].name; }
  // model: what the request asked for; pool: the pool it routed to. Empty allow-list allows all.
  bool allows(std::size_t k, std::string_view model, std::string_view pool) const;
  // Token bucket of rate_per_minute (burst = one minute's worth). 0 when allowed, else seconds to wait.
  int take(std::size_t k, std::chrono::steady_clock::time_point now);

 private:
  struct bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last{};
    bool started = false;
  };
  std::vector<api_key_config> keys_;
  std::mutex mu_;
  std::vector<bucket> buckets_;
};

}  // namespace agifarm::gateway
