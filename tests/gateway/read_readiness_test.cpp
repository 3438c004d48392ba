// read_readiness over real loopback sockets and Asio's real epoll reactor: a read that found the socket
// drained skips the speculative recv() next time, and no data or FIN is ever lost by that.
#include "gateway/read_readiness.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <chrono>
#include <optional>
#include <string>

namespace net = boost::asio;
using tcp = net::ip::tcp;
using agifarm::gateway::readiness::after_wait;
using agifarm::gateway::readiness::read_now;
using agifarm::gateway::readiness::watch_hangup;
using agifarm::gateway::readiness::would_try_at_once;

namespace {

struct socket_pair {
  net::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  tcp::socket server{ioc};
  tcp::socket peer{ioc};  // used synchronously, like a remote process
  socket_pair() {
    tcp::acceptor acc(ioc, tcp::endpoint(net::ip::address_v4::loopback(), 0));
    peer.connect(acc.local_endpoint());
    acc.accept(server);
    server.non_blocking(true);
    watch_hangup(server);
  }
};

struct read_result {
  boost::system::error_code ec;
  std::string data;
};

// One read the way the gateway does it: read_now(), else wait for epoll and after_wait().
net::awaitable<void> read_once(tcp::socket& s, std::optional<read_result>& out) {
  char buf[4096];
  boost::system::error_code ec;
  std::size_t n = 0;
  if (!read_now(s, net::buffer(buf), ec, n)) {
    auto [e, got] = co_await s.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
    ec = e;
    n = got;
    after_wait(s, ec, n, sizeof buf);
  }
  out = read_result{ec, std::string(buf, n)};
}

// Starts a read, lets `between` act while it waits (or not), and runs until it completes or 2 s pass.
template <class F>
std::optional<read_result> read_with(socket_pair& p, F&& between) {
  std::optional<read_result> out;
  net::co_spawn(p.ioc, read_once(p.server, out), net::detached);
  p.ioc.poll();  // the read starts; with nothing there it waits for epoll
  between();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!out && std::chrono::steady_clock::now() < deadline)
    p.ioc.run_one_for(std::chrono::milliseconds(50));
  p.ioc.restart();
  return out;
}

}  // namespace

TEST(read_readiness, a_short_read_from_epoll_marks_the_socket_drained_and_the_next_data_still_arrives) {
  socket_pair p;
  auto first = read_with(p, [&] { net::write(p.peer, net::buffer(std::string("ping"))); });
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->ec) << first->ec.message();
  EXPECT_EQ(first->data, "ping");
#ifdef AGIFARM_READ_READINESS
  EXPECT_FALSE(would_try_at_once(p.server))
      << "the socket should be known drained after a short read from epoll";
#endif
  auto second = read_with(p, [&] { net::write(p.peer, net::buffer(std::string("pong"))); });
  ASSERT_TRUE(second) << "data sent after the socket was marked drained was never delivered";
  EXPECT_EQ(second->data, "pong");
}

TEST(read_readiness, data_that_arrives_while_no_read_waits_is_read_at_once) {
  socket_pair p;
  auto first = read_with(p, [&] { net::write(p.peer, net::buffer(std::string("one"))); });
  ASSERT_TRUE(first);
  // Data arrives and its epoll event is handled while no read is pending: the next read must find it.
  net::write(p.peer, net::buffer(std::string("two")));
  for (int i = 0; i < 5; ++i) p.ioc.poll();
  p.ioc.restart();
  std::optional<read_result> out;
  net::co_spawn(p.ioc, read_once(p.server, out), net::detached);
  for (int i = 0; i < 20 && !out; ++i) p.ioc.run_one_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(out) << "data already in the socket was not read";
  EXPECT_EQ(out->data, "two");
}

// The bug this guards against: a peer that sends its last bytes and closes at once (llama-server does
// so after some responses) delivers data and FIN in one epoll event; taking the short read for "drained"
// would wait forever for an event that never comes.
TEST(read_readiness, a_fin_that_came_with_the_last_data_is_still_seen) {
  socket_pair p;
  auto last = read_with(p, [&] {
    net::write(p.peer, net::buffer(std::string("last")));
    p.peer.shutdown(tcp::socket::shutdown_send);
  });
  ASSERT_TRUE(last);
  EXPECT_EQ(last->data, "last");
  auto eof = read_with(p, [] {});
  ASSERT_TRUE(eof) << "the peer's FIN was lost: the read still waits";
  EXPECT_EQ(eof->ec, net::error::eof);
}

TEST(read_readiness, a_reset_after_data_is_still_seen) {
  socket_pair p;
  auto last = read_with(p, [&] {
    net::write(p.peer, net::buffer(std::string("bye")));
    p.peer.set_option(net::socket_base::linger(true, 0));  // close() sends RST
    p.peer.close();
  });
  ASSERT_TRUE(last);
  EXPECT_EQ(last->data, "bye");
  auto err = read_with(p, [] {});
  ASSERT_TRUE(err) << "the peer's reset was lost: the read still waits";
  EXPECT_TRUE(err->ec) << "expected an error after the reset";
}
