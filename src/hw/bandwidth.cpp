// RAM read bandwidth: all threads sum disjoint slices of a buffer far larger than the caches, pass
// after pass for ~0.4 s; the median pass counts, and the median of three buffers held at once (each on
// other physical pages). Medians, not the best pass: on the VMs this was built on, single short
// passes or buffers read in bursts up to 60 GB/s while llama.cpp reads a model at 29-40 GB/s, and the
// best-pass figure swung between 32 and 63 GB/s from run to run; the medians stay within ~10 %.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
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

namespace {

double measure_one_buffer(int threads, std::vector<std::unique_ptr<std::uint64_t[]>>& keep_alive) {
  // 256 MiB, but never more than a sixteenth of physical memory.
  std::size_t bytes = std::size_t{256} << 20;
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0)
    bytes = std::min(bytes, static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 16);
  bytes = std::max(bytes, std::size_t{64} << 20);
  std::size_t words = bytes / sizeof(std::uint64_t);
  std::unique_ptr<std::uint64_t[]> owned(new (std::nothrow) std::uint64_t[words]);
  if (!owned) return 0;
  std::uint64_t* const data = owned.get();
  keep_alive.push_back(std::move(owned));  // later rounds get other pages, not these again
  std::size_t per = words / static_cast<std::size_t>(threads);
  std::vector<std::uint64_t> sinks(static_cast<std::size_t>(threads) * 8);  // one cache line each
  auto parallel = [&](auto&& fn) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back(fn, t);
    for (auto& t : ts) t.join();
  };
  // First touch from the threads that read, so pages land on their NUMA nodes.
  parallel([&](int t) {
    std::uint64_t* p = data + per * static_cast<std::size_t>(t);
    for (std::size_t i = 0; i < per; ++i) p[i] = i * 0x9E3779B97F4A7C15ull;
  });
  std::vector<double> rates;
  auto start = std::chrono::steady_clock::now();
  for (int pass = 0; pass < 200; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    parallel([&](int t) {
      sinks[static_cast<std::size_t>(t) * 8] += sum_slice(data + per * static_cast<std::size_t>(t), per);
    });
    auto t1 = std::chrono::steady_clock::now();
    double s = std::chrono::duration<double>(t1 - t0).count();
    if (s > 0)
      rates.push_back(static_cast<double>(per * static_cast<std::size_t>(threads) * sizeof(std::uint64_t)) /
                      s);
    if (pass >= 4 && t1 - start > std::chrono::milliseconds(400)) break;
  }
  volatile std::uint64_t keep = 0;
  for (auto s : sinks) keep = keep + s;
  (void)keep;
  if (rates.empty()) return 0;
  std::nth_element(rates.begin(), rates.begin() + static_cast<std::ptrdiff_t>(rates.size() / 2), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace

double measure_ram_bandwidth(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<double> per_buffer;
  std::vector<std::unique_ptr<std::uint64_t[]>> buffers;
  for (int round = 0; round < 3; ++round)
    if (double bw = measure_one_buffer(threads, buffers); bw > 0) per_buffer.push_back(bw);
  if (per_buffer.empty()) return 0;
  std::sort(per_buffer.begin(), per_buffer.end());
  return per_buffer[per_buffer.size() / 2];
}

}  // namespace agifarm::hw
