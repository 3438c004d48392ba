// timed_socket: a socket with a deadline for its pending operations. Deadlines are a time stamp per
// socket that the worker's sweeper checks a few times per second, not beast::tcp_stream's timer per
// operation, which costs a timer-queue insert, a cancel and one more handler run for every read and
// write. Internal to src/gateway.
#pragma once

#include <boost/intrusive/list.hpp>

#include "gateway/wire.hpp"

namespace agifarm::gateway {

using auto_unlink_hook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// The worker's sweeper cancels the socket's operations once `deadline` has passed (they then fail with
// operation_aborted, which settle() turns into beast::error::timeout). Arm before an operation, settle
// after it: an idle socket between operations has no deadline, so a pending client watch on it is
// never cancelled by a stale one.
struct timed_socket : auto_unlink_hook {
  explicit timed_socket(socket_type s) : sock(std::move(s)) {}
  explicit timed_socket(const executor_type& ex) : sock(ex) {}
  void expires_after(clock_type::duration d) {
    deadline = clock_type::now() + d;
    fired = false;
  }
  void disarm() {
    deadline = clock_type::time_point::max();
    fired = false;
  }
  // After an operation: disarm, and name a cancellation by the sweeper a timeout.
  void settle(boost::system::error_code& ec) {
    if (ec && fired) ec = beast::error::timeout;
    disarm();
  }
  socket_type sock;
  clock_type::time_point deadline = clock_type::time_point::max();
  bool fired = false;
  bool idle_client = false;  // a client connection waiting for its next request (closed on stop)
};
using timed_list = boost::intrusive::list<timed_socket, boost::intrusive::constant_time_size<false>>;

// Cancels the operations of every socket in `timed` whose deadline has passed.
inline void expire_deadlines(timed_list& timed, clock_type::time_point now) {
  for (auto& s : timed) {
    if (!s.fired && s.deadline <= now) {
      s.fired = true;
      beast::error_code ignored;
      s.sock.cancel(ignored);
    }
  }
}

}  // namespace agifarm::gateway
