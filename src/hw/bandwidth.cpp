// RAM read bandwidth: all threads sum disjoint slices of one buffer far larger than the caches;
// the best pass counts (the least disturbed by other processes).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <unistd.h>
#include <vector>

#include "hw/hw.hpp"

namespace agifarm::hw {

namespace {

std::uint64_t sum_slice(const std::uint64_t* p, std::size_t n) {
  std::uint64_t a = 0, b = 0, c = 0, d = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  for (; i < n; ++i) a += p[i];
  return a ^ b ^ c ^ d;
}

}  // namespace

double measure_ram_bandwidth(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // 512 MiB, but never more than an eighth of physical memory.
  std::size_t bytes = std::size_t{512} << 20;
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) bytes = std::min(bytes, static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 8);
  bytes = std::max(bytes, std::size_t{64} << 20);
  std::size_t words = bytes / sizeof(std::uint64_t);
  std::unique_ptr<std::uint64_t[]> buf(new (std::nothrow) std::uint64_t[words]);
  if (!buf) return 0;
  std::size_t per = words / static_cast<std::size_t>(threads);
  std::vector<std::uint64_t> sinks(static_cast<std::size_t>(threads) * 8);  // one cache line each
  auto parallel = [&](auto&& fn) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back(fn, t);
    for (auto& t : ts) t.join();
  };
  // First touch from the threads that read, so pages land on their NUMA nodes.
  parallel([&](int t) {
    std::uint64_t* p = buf.get() + per * static_cast<std::size_t>(t);
    for (std::size_t i = 0; i < per; ++i) p[i] = i * 0x9E3779B97F4A7C15ull;
  });
  double best = 0;
  auto start = std::chrono::steady_clock::now();
  for (int pass = 0; pass < 12; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    parallel([&](int t) {
      sinks[static_cast<std::size_t>(t) * 8] += sum_slice(buf.get() + per * static_cast<std::size_t>(t), per);
    });
    auto t1 = std::chrono::steady_clock::now();
    double s = std::chrono::duration<double>(t1 - t0).count();
    if (s > 0) best = std::max(best, static_cast<double>(per * static_cast<std::size_t>(threads) * sizeof(std::uint64_t)) / s);
    if (pass >= 2 && t1 - start > std::chrono::milliseconds(300)) break;
  }
  volatile std::uint64_t keep = 0;
  for (auto s : sinks) keep = keep + s;
  (void)keep;
  return best;
}

}  // namespace agifarm::hw
