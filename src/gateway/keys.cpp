#include "gateway/keys.hpp"

#include <algorithm>
#include <cmath>

namespace agifarm::gateway {

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Runs over max(len) bytes whatever the contents; lengths are compared without branching on data.
  std::size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

key_store::key_store(std::vector<api_key_config> keys) : keys_(std::move(keys)), buckets_(keys_.size()) {}

std::optional<std::size_t> key_store::authenticate(std::string_view authorization,
                                                   std::string_view x_api_key) const {
  std::string_view presented = x_api_key;
  constexpr std::string_view k_bearer = "Bearer ";
  if (authorization.size() > k_bearer.size()) {
    bool bearer = true;
    for (std::size_t i = 0; i < k_bearer.size(); ++i)
      bearer = bearer && std::tolower(static_cast<unsigned char>(authorization[i])) ==
                             std::tolower(static_cast<unsigned char>(k_bearer[i]));
    if (bearer) presented = authorization.substr(k_bearer.size());
  }
  while (!presented.empty() && (presented.front() == ' ' || presented.front() == '\t'))
    presented.remove_prefix(1);
  while (!presented.empty() && (presented.back() == ' ' || presented.back() == '\t'))
    presented.remove_suffix(1);
  if (presented.empty()) return std::nullopt;
  std::optional<std::size_t> found;
  for (std::size_t i = 0; i < keys_.size(); ++i)
    if (constant_time_equal(presented, keys_[i].key) && !found) found = i;
  return found;
}

bool key_store::allows(std::size_t k, std::string_view model, std::string_view pool) const {
  const auto& m = keys_.at(k).models;
  if (m.empty()) return true;
  return std::find(m.begin(), m.end(), model) != m.end() || std::find(m.begin(), m.end(), pool) != m.end();
}

int key_store::take(std::size_t k, std::chrono::steady_clock::time_point now) {
  const int rate = keys_.at(k).rate_per_minute;
  if (rate <= 0) return 0;
  std::lock_guard lock(mu_);
  bucket& b = buckets_[k];
  if (!b.started) {
    b.started = true;
    b.tokens = rate;
    b.last = now;
  }
  double elapsed = std::chrono::duration<double>(now - b.last).count();
  if (elapsed > 0) {
    b.tokens = std::min<double>(rate, b.tokens + elapsed * rate / 60.0);
    b.last = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  double wait = (1.0 - b.tokens) * 60.0 / rate;
  return std::max(1, static_cast<int>(std::ceil(wait)));
}

}  // namespace agifarm::gateway
