// testing: hooks into a gateway::server for tests only (never used by agifarm itself).
#pragma once

#include <memory>

#include "gateway/fail_count.hpp"
#include "gateway/gateway.hpp"

namespace agifarm::gateway {

// From now on every upstream connect, write and read of `s` counts on `f` (nullptr: none). Call
// before start(), or between requests while no request is in flight.
void inject_upstream_failures(server& s, std::shared_ptr<fail_count> f);

}  // namespace agifarm::gateway
