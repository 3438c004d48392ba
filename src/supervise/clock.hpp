// clock: the supervisor's only source of time. The supervisor never sleeps; it is stepped by a driver
// that asks it when the next timer is due (supervisor::step returns that instant) and waits on the real
// clock until then. Tests pass a fake_clock and advance it by hand, so restart/backoff logic is tested
// without sleeping.
//
// Thread-safety: implementations must allow now()/wall_now() from any thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace agifarm::supervise {

using time_point = std::chrono::steady_clock::time_point;
using duration = std::chrono::milliseconds;

class clock {
 public:
  virtual ~clock() = default;
  virtual time_point now() const = 0;         // monotonic; all timers use it
  virtual std::int64_t wall_now() const = 0;  // unix seconds, only for display (start times in state files)
};

class system_clock final : public clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  std::int64_t wall_now() const override {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace agifarm::supervise
