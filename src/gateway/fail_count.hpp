// fail_count: failure injection on the gateway's upstream path, for tests, in the style of Beast's
// test::fail_count. Each upstream operation (a connect to a backend, a write of a request to it, a read
// of its response) asks fail() first; the Nth one fails with `error` instead of running. Unlike
// Beast's, only the Nth fails (the ones after it run), so a retry on another replica can be seen
// to succeed. Install one with inject_upstream_failures (gateway/testing.hpp). Thread-safe.
#pragma once

#include <atomic>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>

namespace agifarm::gateway {

enum class upstream_op { connect, write, read };

class fail_count {
 public:
  explicit fail_count(std::size_t n, boost::system::error_code error = boost::asio::error::connection_reset)
      : n_(n), error_(error) {}
  // True (and `ec` set) if this operation is the Nth; counts it either way.
  bool fail(upstream_op op, boost::system::error_code& ec) {
    if (i_.fetch_add(1) + 1 != n_) return false;
    failed_op_ = op;
    fired_ = true;
    ec = error_;
    return true;
  }
  std::size_t operations() const { return i_.load(); }  // operations counted so far
  bool fired() const { return fired_.load(); }          // whether the Nth has come (and failed)
  upstream_op failed_op() const { return failed_op_.load(); }

 private:
  std::size_t n_;
  boost::system::error_code error_;
  std::atomic<std::size_t> i_{0};
  std::atomic<bool> fired_{false};
  std::atomic<upstream_op> failed_op_{upstream_op::connect};
};

}  // namespace agifarm::gateway
