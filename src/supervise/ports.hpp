// ports: finding free TCP ports for backends. allocate() asks the kernel for a free port on host (bind
// to port 0, read it back, close); is_free() tries to bind the port. Both are inherently racy (another
// process may take the port before the backend binds it); the supervisor checks again before each
// (re)start: a port it chose itself moves to a new free one, a port the plan fixed is a start failure.
//
// Thread-safety: real_ports has no state.
#pragma once

#include <string>

#include "common/result.hpp"

namespace agifarm::supervise {

class port_allocator {
 public:
  virtual ~port_allocator() = default;
  virtual result<int> allocate(const std::string& host) = 0;
  virtual bool is_free(const std::string& host, int port) = 0;
};

class real_ports final : public port_allocator {
 public:
  result<int> allocate(const std::string& host) override;
  bool is_free(const std::string& host, int port) override;
};

}  // namespace agifarm::supervise
