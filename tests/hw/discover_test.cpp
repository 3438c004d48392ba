// Discovery of the local machine through a fake system_access answering with recorded fixtures.
#include <filesystem>

#include "hw_test_util.hpp"

namespace agifarm::hw {
namespace {

using test::fake_system;
using test::fixture;
using test::k_mib;
using test::real_catalogue;

class hw_discover : public ::testing::Test {
 protected:
  void SetUp() override {
    sys.files["/proc/cpuinfo"] = fixture("cpuinfo-xeon-2s-ht.txt");
    sys.files["/proc/meminfo"] = fixture("meminfo-64g.txt");
    dir = std::filesystem::path(AGIFARM_BINARY_DIR) / "test-work" /
          ("hw-discover-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    opt.cache_file = dir / "hw.json";
    opt.measure = [this] {
      ++measured;
      return 42e9;
    };
  }
  fake_system sys;
  discover_options opt;
  std::filesystem::path dir;
  int measured = 0;
};

TEST_F(hw_discover, TwoRtx3090AreMatchedToTheCatalogue) {
  sys.tools["nvidia-smi"] = fixture("nvidia-smi-2x3090.csv");
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d) << d.err().message;
  const node& n = d->local;
  EXPECT_EQ(n.name, "local");
  EXPECT_EQ(n.cpu_model, "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz");
  EXPECT_EQ(n.cpu_cores, 4);
  EXPECT_EQ(n.cpu_threads, 8);
  EXPECT_DOUBLE_EQ(n.cpu_peak_flops, 4 * 4800e6 * 64);
  EXPECT_EQ(n.ram_bytes, 65757812ull * 1024);
  EXPECT_EQ(n.ram_free_bytes, 58911020ull * 1024);
  ASSERT_EQ(n.gpus.size(), 2u);
  EXPECT_EQ(n.gpus[0].catalogue_id, "rtx3090");
  EXPECT_DOUBLE_EQ(n.gpus[0].bandwidth_bytes_per_s, 936e9);
  EXPECT_DOUBLE_EQ(n.gpus[0].fp16_tflops, 142);
  EXPECT_EQ(n.gpus[1].free_vram_bytes, 24253 * k_mib);
  EXPECT_TRUE(d->notes.empty()) << d->notes.at(0);
  // The exact documented queries were run.
  ASSERT_EQ(sys.calls.size(), 2u);
  EXPECT_EQ(sys.calls[0], nvidia_smi_argv());
  EXPECT_EQ(sys.calls[1], rocm_smi_argv());
  // Bandwidth measured once, then read from the cache.
  EXPECT_EQ(n.ram_bandwidth_source, "measured");
  EXPECT_DOUBLE_EQ(n.ram_bandwidth_bytes_per_s, 42e9);
  EXPECT_EQ(measured, 1);
  auto again = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->local.ram_bandwidth_source, "cache");
  EXPECT_DOUBLE_EQ(again->local.ram_bandwidth_bytes_per_s, 42e9);
  EXPECT_EQ(measured, 1);
  auto inv = local_inventory(again->local);
  EXPECT_EQ(inv.gpu_count(), 2);
  EXPECT_EQ(inv.between_gpus("local", 0, 1).kind, link_kind::pcie);
}

TEST_F(hw_discover, CacheForAnotherMachineIsIgnored) {
  {
    std::ofstream(opt.cache_file)
        << R"j({"cpu_model":"other","cpu_threads":8,"ram_bytes":1,"ram_bandwidth_bytes_per_s":1e10})j";
  }
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->local.ram_bandwidth_source, "measured");
  EXPECT_EQ(measured, 1);
  { std::ofstream(opt.cache_file) << "not json"; }
  auto d2 = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d2);
  EXPECT_EQ(measured, 2);
  opt.use_cache = false;
  auto d3 = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d3);
  EXPECT_EQ(measured, 3);
}

TEST_F(hw_discover, NoMeasurementFallsBackToTheCatalogue) {
  opt.measure_bandwidth = false;
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d);
  EXPECT_EQ(measured, 0);
  EXPECT_EQ(d->local.ram_bandwidth_source, "catalogue");
  EXPECT_DOUBLE_EQ(d->local.ram_bandwidth_bytes_per_s, real_catalogue().cpu.ram_bandwidth_bytes_per_s);
  opt.measure_bandwidth = true;
  opt.measure = [] { return 0.0; };  // a failed measurement
  auto d2 = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->local.ram_bandwidth_source, "catalogue");
}

TEST_F(hw_discover, NoGpuSaysSoAndWhy) {
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d) << d.err().message;
  EXPECT_TRUE(d->local.gpus.empty());
  ASSERT_EQ(d->notes.size(), 1u);
  EXPECT_NE(d->notes[0].find("no GPU found"), std::string::npos) << d->notes[0];
  EXPECT_NE(d->notes[0].find("nvidia-smi: not found"), std::string::npos) << d->notes[0];
  EXPECT_NE(d->notes[0].find("rocm-smi: not found"), std::string::npos) << d->notes[0];
  EXPECT_NE(d->notes[0].find("CPU-only"), std::string::npos) << d->notes[0];
}

TEST_F(hw_discover, MixedCardsUnknownOnesAreNoted) {
  sys.tools["nvidia-smi"] = fixture("nvidia-smi-mixed.csv");
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d) << d.err().message;
  const auto& g = d->local.gpus;
  ASSERT_EQ(g.size(), 8u);
  EXPECT_EQ(g[0].catalogue_id, "h100-sxm");
  EXPECT_EQ(g[1].catalogue_id, "a100-40gb");
  EXPECT_EQ(g[2].catalogue_id, "a100-80gb-pcie");  // "NVIDIA A100 80GB PCIe": the PCIe card's own entry
  EXPECT_EQ(g[3].catalogue_id, "rtxa6000");
  EXPECT_EQ(g[4].catalogue_id, "rtx6000ada");
  EXPECT_EQ(g[4].pcie_gen, 4);  // [N/A] from the tool: the catalogue's typical link
  EXPECT_EQ(g[4].pcie_lanes, 16);
  EXPECT_TRUE(g[5].catalogue_id.empty());  // Tesla T4
  EXPECT_EQ(g[5].bandwidth_bytes_per_s, 0);
  EXPECT_EQ(g[6].catalogue_id, "rtx4090");
  EXPECT_EQ(g[6].pcie_lanes, 8);  // the tool's figure wins
  EXPECT_EQ(g[7].catalogue_id, "rtxpro6000");
  EXPECT_EQ(g[7].pcie_gen, 5);
  ASSERT_EQ(d->notes.size(), 1u);
  EXPECT_NE(d->notes[0].find("GPU 5 'Tesla T4' is not in the catalogue"), std::string::npos) << d->notes[0];
}

TEST_F(hw_discover, AmdAfterNvidiaContinuesTheIndex) {
  sys.tools["nvidia-smi"] = fixture("nvidia-smi-2x3090.csv");
  sys.tools["rocm-smi"] = fixture("rocm-smi-8x-mi300x.json");
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d) << d.err().message;
  ASSERT_EQ(d->local.gpus.size(), 10u);
  EXPECT_EQ(d->local.gpus[2].index, 2);
  EXPECT_EQ(d->local.gpus[2].catalogue_id, "mi300x");
  EXPECT_EQ(d->local.gpus[9].index, 9);
  EXPECT_EQ(d->local.gpus[9].vendor, gpu_vendor::amd);
  EXPECT_DOUBLE_EQ(d->local.gpus[9].bandwidth_bytes_per_s, 5300e9);
}

TEST_F(hw_discover, BrokenToolOutputIsNotedNotFatal) {
  sys.tools["nvidia-smi"] = "Failed to initialize NVML: Driver/library version mismatch\n";
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_TRUE(d) << d.err().message;
  EXPECT_TRUE(d->local.gpus.empty());
  ASSERT_GE(d->notes.size(), 1u);
  EXPECT_NE(d->notes[0].find("ignoring nvidia-smi"), std::string::npos) << d->notes[0];
}

TEST_F(hw_discover, UnreadableProcIsAnError) {
  sys.files.erase("/proc/meminfo");
  auto d = discover_local(sys, real_catalogue(), opt);
  ASSERT_FALSE(d);
  EXPECT_NE(d.err().message.find("/proc/meminfo"), std::string::npos);
  sys.files["/proc/meminfo"] = fixture("meminfo-64g.txt");
  sys.files["/proc/cpuinfo"] = "garbage";
  auto c = discover_local(sys, real_catalogue(), opt);
  ASSERT_FALSE(c);
  EXPECT_NE(c.err().message.find("/proc/cpuinfo"), std::string::npos);
}

TEST(hw_real_system, RunsToolsAndReportsMissingOnes) {
  auto ok = real_system().run({"sh", "-c", "printf 'a, b\\n'"});
  ASSERT_TRUE(ok) << ok.err().message;
  EXPECT_EQ(*ok, "a, b\n");
  auto missing = real_system().run({"agifarm-no-such-tool-xyz"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.err().message.find("not found"), std::string::npos);
  auto failing = real_system().run({"sh", "-c", "exit 6"});
  ASSERT_FALSE(failing);
  EXPECT_NE(failing.err().message.find("status 6"), std::string::npos) << failing.err().message;
  auto f = real_system().read_file("/proc/meminfo");
  ASSERT_TRUE(f);
  EXPECT_TRUE(parse_meminfo(*f));
}

}  // namespace
}  // namespace agifarm::hw
