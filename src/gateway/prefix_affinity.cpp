#include <algorithm>
#include <cmath>

#include "gateway/balancer.hpp"
#include "gateway/request.hpp"

namespace agifarm::gateway {
namespace {

constexpr int k_virtual_nodes = 64;

// Bounded-load consistent hashing (Mirrokni, Thorup, Zadimoghaddam 2018): walk the ring clockwise from
// the key; take the first candidate whose load after adding this request stays within
// ceil(load_factor * (total load + 1) / candidates) and which has a free slot.
class prefix_affinity final : public balancer {
 public:
  prefix_affinity(const std::vector<std::string>& names, double load_factor) : load_factor_(load_factor) {
    for (std::size_t r = 0; r < names.size(); ++r)
      for (int v = 0; v < k_virtual_nodes; ++v)
        ring_.push_back({hash64(names[r], static_cast<std::uint64_t>(v) + 1), r});
    std::sort(ring_.begin(), ring_.end());
    fallback_ = make_least_outstanding();
  }

  std::optional<std::size_t> choose(std::span<const replica_view> c, const pick_request& req) override {
    if (c.empty()) return std::nullopt;
    if (!req.has_key || ring_.empty()) return fallback_->choose(c, req);
    long long total = 0;
    for (const auto& r : c) total += r.outstanding;
    long long bound = static_cast<long long>(
        std::ceil(load_factor_ * static_cast<double>(total + 1) / static_cast<double>(c.size())));
    auto it = std::lower_bound(ring_.begin(), ring_.end(), node{req.key, 0});
    std::vector<bool> seen(c.size(), false);
    std::size_t visited = 0;
    for (std::size_t k = 0; k < ring_.size() && visited < c.size(); ++k, ++it) {
      if (it == ring_.end()) it = ring_.begin();
      // position of this replica among the candidates (few candidates: linear scan)
      for (std::size_t i = 0; i < c.size(); ++i) {
        if (c[i].id != it->replica || seen[i]) continue;
        seen[i] = true;
        ++visited;
        if (c[i].outstanding + 1 > bound) continue;  // over the load bound: next one on the ring
        if (c[i].outstanding < c[i].slots) return i;
        // Within the bound but all its slots busy: wait for it (the request queues) rather than
        // recompute the whole prefix elsewhere. The bound keeps this from starving: once this
        // replica carries more than load_factor times the mean, the key moves on.
        return std::nullopt;
      }
    }
    return fallback_->choose(c, req);  // everyone is over the bound: take any free slot
  }

 private:
  struct node {
    std::uint64_t hash;
    std::size_t replica;
    bool operator<(const node& o) const { return hash < o.hash || (hash == o.hash && replica < o.replica); }
  };
  double load_factor_;
  std::vector<node> ring_;
  std::unique_ptr<balancer> fallback_;
};

}  // namespace

std::unique_ptr<balancer> make_prefix_affinity(const std::vector<std::string>& names, double load_factor) {
  return std::make_unique<prefix_affinity>(names, load_factor);
}

}  // namespace agifarm::gateway
