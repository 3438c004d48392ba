#include "gateway/recycling_allocator.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace agifarm::gateway;

TEST(recycling_allocator, a_freed_block_is_handed_out_again_and_large_ones_bypass_the_cache) {
  recycling_allocator<char> a;
  char* p = a.allocate(40);
  a.deallocate(p, 40);
  char* q = a.allocate(60);  // same 64-byte class
  EXPECT_EQ(p, q);
  char* other = a.allocate(100);  // another class: not the cached block
  EXPECT_NE(other, q);
  a.deallocate(q, 60);
  a.deallocate(other, 100);
  char* big = a.allocate(4096);
  big[4095] = 1;
  a.deallocate(big, 4096);
}

TEST(recycling_allocator, beast_fields_parse_and_copy_across_threads) {
  // Fields made on worker threads and destroyed on this one, and the reverse: blocks move between
  // thread caches, each thread's cache is released at its exit (ASan: no leak, no use after free).
  using fields = boost::beast::http::basic_fields<recycling_allocator<char>>;
  std::vector<fields> made(4);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&made, t] {
      for (int round = 0; round < 200; ++round) {
        fields f;
        for (int i = 0; i < 12; ++i)
          f.insert("x-header-" + std::to_string(i), std::string(static_cast<std::size_t>(i * 40), 'v'));
        if (round == 199) made[t] = std::move(f);
      }
    });
  }
  for (auto& th : ts) th.join();
  for (auto& f : made) {
    EXPECT_EQ(f["x-header-3"], std::string(120, 'v'));
    EXPECT_EQ(std::distance(f.begin(), f.end()), 12);
  }
  std::thread([m = std::move(made)]() mutable { m.clear(); }).join();
  boost::beast::http::request_parser<boost::beast::http::string_body, recycling_allocator<char>> p;
  boost::system::error_code ec;
  std::string req =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: "
      "2\r\n\r\n{}";
  p.eager(true);
  p.put(boost::asio::buffer(req), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(p.is_done());
  EXPECT_EQ(p.get()[boost::beast::http::field::content_type], "application/json");
}
