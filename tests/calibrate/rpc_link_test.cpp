// RPC over a real link: a model sharded onto a ggml-rpc-server that lives in a network namespace this
// test makes (support/netns_cluster: a bridge and a veth), the link limited with `tc ... tbf` to a
// rate in both directions, llama-bench on this side timing decode and prefill; the speed model
// predicts the same placement over the same link. What is compared is the cost RPC adds per token
// (the RPC run minus the same model run locally, measured and predicted): both "machines" are this
// box's CPUs, so the compute part is the same on either side and cancels out.
//
// No latency is added: the kernel here has tbf but not netem (checked, and said), so the link's
// one-way latency is the veth's own (tens of µs). Figures go to docs/benchmarks.md.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <iostream>
#include <map>
#include <regex>

#include "gguf/gguf.hpp"
#include "plan/memory_model.hpp"
#include "plan/server_args.hpp"
#include "plan/speed_model.hpp"
#include "support/netns_cluster.hpp"
#include "support/support.hpp"

namespace agifarm {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr int k_rpc_port = 50052;
constexpr int k_prompt = 64;
constexpr int k_gen = 16;
// The link's one-way latency as the model is told it: a veth inside one kernel.
constexpr double k_veth_latency_s = 30e-6;

test::run_result sh(const std::string& cmd, std::chrono::seconds timeout = 30s) {
  return test::run({"/bin/sh", "-c", cmd}, timeout);
}

bool tcp_open(const std::string& addr, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

struct bench {
  double pp = 0, tg = 0;  // tokens/s, median of the repetitions
};

double median_of(const json::value& v) {
  std::vector<double> xs;
  if (const auto* a = v.if_array())
    for (const auto& x : *a) xs.push_back(x.to_number<double>());
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// llama-bench -o json: one object per test, samples_ts per repetition.
bench parse_bench(const std::string& out) {
  bench b;
  const auto start = out.find('[');
  const auto end = out.rfind(']');
  if (start == std::string::npos || end == std::string::npos || end < start) return b;
  boost::system::error_code ec;
  auto v = json::parse(out.substr(start, end - start + 1), ec);
  if (ec || !v.is_array()) return b;
  for (const auto& t : v.as_array()) {
    const auto& o = t.as_object();
    const double ts = median_of(o.at("samples_ts"));
    if (o.at("n_gen").to_number<int>() > 0)
      b.tg = ts;
    else
      b.pp = ts;
  }
  return b;
}

struct rpc_link : ::testing::Test {
  static inline std::unique_ptr<test::netns_cluster> cluster;
  static inline std::string why, model, host_veth, rpc_addr;
  static inline std::unique_ptr<test::child> server;
  static inline bool have_tbf = false, have_netem = false;
  static inline bench local;

  static void SetUpTestSuite() {
    model =
        test::tiny_model("qwen3", {"--n-layer", "4", "--n-embd", "256", "--n-ff", "768", "--type", "Q8_0"});
    cluster = test::netns_cluster::create(1, why);
    if (!cluster) return;
    // the bridge side of node 0's veth: eth0@ifN in the namespace is interface N here
    auto link = sh("ip -n " + cluster->ns(0) + " -o link show eth0").output;
    std::smatch m;
    if (std::regex_search(link, m, std::regex("@if([0-9]+)"))) {
      auto all = sh("ip -o link show").output;
      std::smatch n;
      if (std::regex_search(all, n, std::regex("(^|\n)" + m[1].str() + ": ([^:@]+)[@:]")))
        host_veth = n[2].str();
    }
    const std::string ns = "ip netns exec " + cluster->ns(0) + " ";
    have_tbf =
        sh(ns + "tc qdisc replace dev eth0 root tbf rate 1gbit burst 64kb latency 50ms").exit_code == 0;
    have_netem = sh(ns + "tc qdisc replace dev eth0 root netem delay 1ms").exit_code == 0;
    sh(ns + "tc qdisc del dev eth0 root");
    std::cerr << "[link] tc tbf " << (have_tbf ? "available" : "MISSING") << ", tc netem "
              << (have_netem ? "available" : "missing (no latency emulation: the veth's own)") << '\n';
    // the server keeps big tensors in a file cache: later loads send their hashes, not the bytes
    const std::string cache = test::temp_dir("rpc-link-cache");
    rpc_addr = cluster->address(0);
    server = std::make_unique<test::child>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", cluster->ns(0), "/usr/bin/env",
                                 "LLAMA_CACHE=" + cache, test::llama_bin() + "/ggml-rpc-server", "-H",
                                 rpc_addr, "-p", std::to_string(k_rpc_port), "-t", "1", "-c"},
        test::temp_dir("rpc-link-log") + "/rpc-server.log");
    if (!test::wait_until([] { return tcp_open(rpc_addr, k_rpc_port); }, 20s))
      why = "ggml-rpc-server did not listen";
    local = run_bench(false);
  }
  static void TearDownTestSuite() {
    server.reset();
    cluster.reset();
  }
  void SetUp() override {
    ASSERT_NE(cluster, nullptr) << "network namespaces could not be made: " << why;
    ASSERT_TRUE(why.empty()) << why;
    ASSERT_TRUE(have_tbf) << "tc tbf is missing: the link cannot be rate limited";
    ASSERT_FALSE(host_veth.empty()) << "the bridge side of the namespace's veth was not found";
  }

  static bench run_bench(bool rpc) {
    std::vector<std::string> argv{test::llama_bin() + "/llama-bench",
                                  "-m",
                                  model,
                                  "-p",
                                  std::to_string(k_prompt),
                                  "-n",
                                  std::to_string(k_gen),
                                  "-r",
                                  "3",
                                  "-t",
                                  "1",
                                  "-o",
                                  "json"};
    if (rpc)
      argv.insert(argv.end(), {"-rpc", fmt::format("{}:{}", rpc_addr, k_rpc_port), "-ngl", "99"});
    else
      argv.insert(argv.end(), {"-ngl", "0"});
    auto r = test::run(argv, 120s);
    auto b = parse_bench(r.output);
    if (r.exit_code != 0 || b.tg <= 0 || b.pp <= 0) ADD_FAILURE() << "llama-bench failed: " << r.output;
    return b;
  }
  // The rate on both directions of the link ("" removes it).
  static void limit(const std::string& rate) {
    const std::string ns = "ip netns exec " + cluster->ns(0) + " ";
    if (rate.empty()) {
      sh(ns + "tc qdisc del dev eth0 root");
      sh("tc qdisc del dev " + host_veth + " root");
      return;
    }
    const std::string q = " root tbf rate " + rate + " burst 64kb latency 100ms";
    ASSERT_EQ(sh(ns + "tc qdisc replace dev eth0" + q).exit_code, 0);
    ASSERT_EQ(sh("tc qdisc replace dev " + host_veth + q).exit_code, 0);
  }

  struct prediction {
    plan::speed_estimate local, rpc;
  };
  // The speed model for the model all on this machine's CPU, and all layers (and the output) on the
  // RPC server's CPU over a link of `gbit`. Both CPUs get the same figures: they cancel in the
  // difference, which is what the model says RPC costs.
  static prediction predict(double gbit) {
    prediction out;
    auto file = gguf::read_model(model);
    EXPECT_TRUE(file) << (file ? "" : file.err().message);
    if (!file) return out;
    const auto shape = plan::model_shape_of(*file);
    auto place = [&](bool rpc) {
      std::vector<std::string> argv{
          "-m", model, "-c", "4096", "-np", "1", "-ngl", rpc ? "99" : "0", "-ub", std::to_string(k_prompt)};
      auto args = plan::parse_server_args(argv);
      EXPECT_TRUE(args);
      std::vector<plan::device_desc> devs;
      if (rpc) {
        plan::device_desc d;
        d.name = "RPC0";
        d.buffer_names = {fmt::format("RPC0[{}:{}]", rpc_addr, k_rpc_port), "RPC0"};
        d.free_bytes = 8ull << 30;
        devs.push_back(d);
      }
      auto est = plan::estimate_memory(shape, *args, devs);
      EXPECT_TRUE(est) << (est ? "" : est.err().message);
      return std::move(est).value();
    };
    const plan::compute_unit cpu{"cpu", 10e9, 50e9, true, ""};
    for (bool rpc : {false, true}) {
      const auto est = place(rpc);
      plan::speed_input si;
      si.shape = &shape;
      si.placement = &est;
      si.host = cpu;
      si.n_ubatch = k_prompt;
      if (rpc) {
        plan::compute_unit remote = cpu;
        remote.remote = true;
        si.devices = {remote};
        si.hops = {{gbit * 1e9 / 8, k_veth_latency_s, true}};  // the RPC device's return to this machine
      }
      (rpc ? out.rpc : out.local) = plan::estimate_speed(si);
    }
    return out;
  }
};

// Decode and prefill over 100 Mbit/s, 1 Gbit/s and 10 Gbit/s: the cost RPC adds per token, measured
// (RPC run minus local run) and predicted, within a factor the test states; the slow link costs more.
TEST_F(rpc_link, rpc_cost_per_token_matches_the_speed_model) {
  ASSERT_GT(local.tg, 0);
  // the first RPC run sends the weights (and fills the server's cache): no limit for it
  limit("");
  const bench open = run_bench(true);
  std::cerr << fmt::format(
      "[measured] local: pp{} {:.1f} tg{} {:.1f} tok/s; RPC, no limit: pp {:.1f} tg {:.1f}\n", k_prompt,
      local.pp, k_gen, local.tg, open.pp, open.tg);
  struct rate {
    std::string tc;
    double gbit;
  };
  std::map<std::string, double> dec_measured, dec_predicted;
  for (const rate& r : {rate{"100mbit", 0.1}, rate{"1gbit", 1.0}, rate{"10gbit", 10.0}}) {
    limit(r.tc);
    const bench b = run_bench(true);
    const auto p = predict(r.gbit);
    const double m_dec = 1e3 / b.tg - 1e3 / local.tg;  // ms added per decoded token
    const double p_dec = 1e3 / p.rpc.decode_tps - 1e3 / p.local.decode_tps;
    const double m_pre = 1e3 / b.pp - 1e3 / local.pp;  // ms added per prompt token
    const double p_pre = 1e3 / p.rpc.prefill_tps - 1e3 / p.local.prefill_tps;
    std::cerr << fmt::format(
        "[measured] {}: RPC pp{} {:.1f} tg{} {:.1f} tok/s; added per token: decode {:.2f} ms (predicted "
        "{:.2f}), "
        "prefill {:.3f} ms (predicted {:.3f})\n",
        r.tc, k_prompt, b.pp, k_gen, b.tg, m_dec, p_dec, m_pre, p_pre);
    dec_measured[r.tc] = m_dec;
    dec_predicted[r.tc] = p_dec;
    if (r.gbit < 1.0) {
      // where the link decides (100 Mbit/s: the logits alone are 49 ms a token): the added decode cost
      // within a factor 1.6 of the model's (without the logits term the model says 2.9 ms: 15x short);
      // prefill within 3x (the fitted 25 bytes per embedding value per token overstate this link's
      // prefill cost about 2x, docs/benchmarks.md). At 1 and 10 Gbit/s the added cost (1-8 ms) is
      // below the noise of this shared 2-core machine: printed, not asserted.
      EXPECT_GT(m_dec, p_dec / 1.6) << r.tc;
      EXPECT_LT(m_dec, p_dec * 1.6) << r.tc;
      EXPECT_GT(m_pre, p_pre / 3) << r.tc;
      EXPECT_LT(m_pre, p_pre * 3) << r.tc;
    }
  }
  limit("");
  EXPECT_GT(dec_measured["100mbit"], 3 * dec_measured["1gbit"]) << "the slow link must cost more per token";
  EXPECT_GT(dec_predicted["100mbit"], 3 * dec_predicted["1gbit"]);
}

}  // namespace
}  // namespace agifarm
