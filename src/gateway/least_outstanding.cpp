#include "gateway/balancer.hpp"

namespace agifarm::gateway {
namespace {

class least_outstanding final : public balancer {
 public:
  std::optional<std::size_t> choose(std::span<const replica_view> c, const pick_request&) override {
    std::optional<std::size_t> best;
    // Compare outstanding/slots as cross products; start the scan at a rotating offset so ties spread.
    std::size_t n = c.size();
    if (n == 0) return std::nullopt;
    std::size_t start = next_++ % n;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = (start + k) % n;
      if (c[i].outstanding >= c[i].slots) continue;
      if (!best || static_cast<long long>(c[i].outstanding) * c[*best].slots <
                       static_cast<long long>(c[*best].outstanding) * c[i].slots)
        best = i;
    }
    return best;
  }

 private:
  std::size_t next_ = 0;
};

}  // namespace

std::unique_ptr<balancer> make_least_outstanding() { return std::make_unique<least_outstanding>(); }

std::unique_ptr<balancer> make_balancer(balance policy, const std::vector<std::string>& names) {
  if (policy == balance::prefix_affinity) return make_prefix_affinity(names);
  return make_least_outstanding();
}

}  // namespace agifarm::gateway
