// read_readiness: tells Asio's epoll reactor that a socket has nothing to read, so that the next read
// waits for epoll instead of first trying recv() on the chance that data is already there.
//
// Why: Asio registers sockets edge-triggered and, whenever a read starts with none pending, tries
// recv() at once (it cannot know whether an edge went by while no read was pending). On a
// request/response connection the data is almost never there yet, so every read costs one recv() that
// fails with EAGAIN: two wasted system calls per proxied request (client and backend side). nginx
// avoids them by remembering that the last read drained the socket (`rev->ready = 0`) and by asking
// epoll for EPOLLRDHUP, so that a peer's FIN that arrived with the last data is not mistaken for
// "drained". This is the same bookkeeping, kept in the reactor's own per-socket flag
// (`try_speculative_`), which the reactor sets again on the socket's next epoll event.
//
// Use (read_now() and after_wait() below wrap the last three for a read):
// - watch_hangup(s) once per socket (one epoll_ctl): adds EPOLLRDHUP to its registration.
// - mark_drained(s) right after a recv() on `s` failed with would_block: always safe, since anything
//   arriving later raises a new epoll event.
// - mark_drained_after_event(s) right after a read that completed from an epoll event (its handler
//   runs straight from that event, with no io_context::run() step in between) and returned fewer
//   bytes than asked: marks the socket drained unless that event also reported a hang-up or error
//   (FIN, RST), which no later event would announce again. Without EPOLLRDHUP registered it does
//   nothing.
//   "Straight from that event" holds only for the first operation the event completes: no other
//   operation (a wait, a write) may be pending on the socket while such a read waits. The gateway
//   never has one: it cancels a request's client watch before reading that client's next request, and
//   it reads a backend's answer only after writing the request.
// A short read that did not come from an epoll event proves nothing (a FIN may have come with it):
// leave the flag alone; the next read then tries recv() at once, as Asio always does.
//
// Works with Boost 1.81's epoll reactor (the one on Linux without io_uring), where it reaches
// non-public members; with any other reactor or Boost version these functions do nothing and Asio
// behaves as usual.
#pragma once

#include <sys/epoll.h>

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/error.hpp>
#include <boost/version.hpp>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace agifarm::gateway::readiness {

#if BOOST_VERSION == 108100 && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_WINDOWS)
#define AGIFARM_READ_READINESS 1
namespace detail {
using reactor = boost::asio::detail::epoll_reactor;
using descriptor_state = reactor::descriptor_state;
using operation = boost::asio::detail::scheduler_operation;
static_assert(std::is_same_v<boost::asio::detail::reactor, reactor>);

// Explicit instantiation may name private members ([temp.spec.general]/6): these hand out pointers to
// the reactor's per-socket state without changing Asio.
template <class Tag, typename Tag::type M>
struct expose {
  friend typename Tag::type member(Tag) { return M; }
};
#define AGIFARM_EXPOSE(tag, type_, pointer) \
  struct tag {                              \
    using type = type_;                     \
    friend type member(tag);                \
  };                                        \
  template struct expose<tag, pointer>;
AGIFARM_EXPOSE(speculative_tag, bool (descriptor_state::*)[reactor::max_ops],
               &descriptor_state::try_speculative_)
AGIFARM_EXPOSE(registered_tag, uint32_t descriptor_state::*, &descriptor_state::registered_events_)
AGIFARM_EXPOSE(descriptor_tag, int descriptor_state::*, &descriptor_state::descriptor_)
AGIFARM_EXPOSE(reactor_tag, reactor* descriptor_state::*, &descriptor_state::reactor_)
AGIFARM_EXPOSE(epoll_fd_tag, int reactor::*, &reactor::epoll_fd_)
AGIFARM_EXPOSE(events_tag, unsigned int operation::*, &operation::task_result_)
#undef AGIFARM_EXPOSE

// basic_socket::impl_ is protected: a derived class may form a pointer to it.
template <class Socket>
struct socket_access : Socket {
  static descriptor_state* state(Socket& s) {
    auto impl = &socket_access::impl_;
    return (s.*impl).get_implementation().reactor_data_;
  }
};
template <class Socket>
descriptor_state* state(Socket& s) {
  return socket_access<Socket>::state(s);
}
inline bool& speculative_read(descriptor_state* d) {
  return (d->*member(speculative_tag{}))[reactor::read_op];
}
inline uint32_t last_events(descriptor_state* d) {
  // descriptor_state derives privately from the scheduler operation that carries the event mask; a
  // C-style cast may name an inaccessible base ([expr.cast]/4).
  return ((operation*)d)->*member(events_tag{});
}
}  // namespace detail

template <class Socket>
void watch_hangup(Socket& s) {
  auto* d = detail::state(s);
  if (!d) return;
  uint32_t& registered = d->*member(detail::registered_tag{});
  if (registered == 0 || (registered & EPOLLRDHUP)) return;
  epoll_event ev{};
  ev.events = registered | EPOLLRDHUP;
  ev.data.ptr = d;
  int epoll_fd = (d->*member(detail::reactor_tag{}))->*member(detail::epoll_fd_tag{});
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, d->*member(detail::descriptor_tag{}), &ev) == 0)
    registered = ev.events;
}

template <class Socket>
void mark_drained(Socket& s) {
  if (auto* d = detail::state(s)) detail::speculative_read(d) = false;
}

template <class Socket>
void mark_drained_after_event(Socket& s) {
  auto* d = detail::state(s);
  if (!d || !(d->*member(detail::registered_tag{}) & EPOLLRDHUP)) return;
  if (detail::last_events(d) & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) return;
  detail::speculative_read(d) = false;
}

// Whether a read started now would first try recv() at once.
template <class Socket>
bool would_try_at_once(Socket& s) {
  auto* d = detail::state(s);
  return !d || detail::speculative_read(d);
}
#else
template <class Socket>
void watch_hangup(Socket&) {}
template <class Socket>
void mark_drained(Socket&) {}
template <class Socket>
void mark_drained_after_event(Socket&) {}
template <class Socket>
bool would_try_at_once(Socket&) {
  return true;
}
#endif

// The part of a read that can finish at once: unless the socket is marked drained, one non-blocking
// recv() (the socket must be in non-blocking mode). Returns true when that settled the read (`n`
// bytes, or an error such as eof in `ec`); false when the caller must wait with async_read_some, the
// socket then being marked drained so that the wait goes straight to epoll.
template <class Socket, class Buffer>
bool read_now(Socket& sock, const Buffer& b, boost::system::error_code& ec, std::size_t& n) {
  n = 0;
  if (!would_try_at_once(sock)) return false;
  n = sock.read_some(b, ec);
  if (ec && (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again)) {
    ec = {};
    n = 0;
    mark_drained(sock);
    return false;
  }
  return true;  // a short read here proves nothing: a FIN may have come with the data
}

// After the async_read_some that read_now() sent to epoll: it completed from an epoll event.
template <class Socket>
void after_wait(Socket& sock, const boost::system::error_code& ec, std::size_t n, std::size_t asked) {
  if (!ec && n < asked) mark_drained_after_event(sock);
}

}  // namespace agifarm::gateway::readiness
