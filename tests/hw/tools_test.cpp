// Parsers of tool output on recorded fixtures (documented formats) and on bad input.
#include "hw_test_util.hpp"

namespace agifarm::hw {
namespace {

using test::fixture;
using test::k_mib;

TEST(hw_nvidia_smi, QueryIsTheDocumentedOne) {
  auto argv = nvidia_smi_argv();
  ASSERT_EQ(argv.size(), 3u);
  EXPECT_EQ(argv[1], "--query-gpu=index,name,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max");
  EXPECT_EQ(argv[2], "--format=csv,noheader,nounits");
}

TEST(hw_nvidia_smi, TwoRtx3090) {
  auto r = parse_nvidia_smi_csv(fixture("nvidia-smi-2x3090.csv"));
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "NVIDIA GeForce RTX 3090");
  EXPECT_EQ((*r)[0].vendor, gpu_vendor::nvidia);
  EXPECT_EQ((*r)[0].vram_bytes, 24576 * k_mib);
  EXPECT_EQ((*r)[0].free_vram_bytes, 23985 * k_mib);
  EXPECT_EQ((*r)[1].index, 1);
  EXPECT_EQ((*r)[1].pcie_gen, 4);
  EXPECT_EQ((*r)[1].pcie_lanes, 16);
  EXPECT_TRUE((*r)[0].catalogue_id.empty());  // matching is discovery's job
}

TEST(hw_nvidia_smi, MixedCardsWithUnavailableFields) {
  auto r = parse_nvidia_smi_csv(fixture("nvidia-smi-mixed.csv"));
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->size(), 8u);
  const gpu& ada = (*r)[4];
  EXPECT_EQ(ada.name, "NVIDIA RTX 6000 Ada Generation");
  EXPECT_EQ(ada.vram_bytes, 49140 * k_mib);
  EXPECT_EQ(ada.free_vram_bytes, 0u);  // [N/A]
  EXPECT_EQ(ada.pcie_gen, 0);
  EXPECT_EQ(ada.pcie_lanes, 0);
  EXPECT_EQ((*r)[6].pcie_lanes, 8);
  EXPECT_EQ((*r)[7].name, "NVIDIA RTX PRO 6000 Blackwell Workstation Edition");
  EXPECT_EQ((*r)[7].pcie_gen, 0);  // [Not Supported]
  EXPECT_EQ((*r)[7].pcie_lanes, 16);
}

TEST(hw_nvidia_smi, CrlfLineEndings) {
  auto r = parse_nvidia_smi_csv(fixture("nvidia-smi-datacenter-crlf.csv"));
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].name, "NVIDIA H200");
  EXPECT_EQ((*r)[3].pcie_lanes, 16);
}

TEST(hw_nvidia_smi, NoDevicesIsEmptyNotAnError) {
  auto r = parse_nvidia_smi_csv(fixture("nvidia-smi-no-devices.txt"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_TRUE(r->empty());
  auto e = parse_nvidia_smi_csv("");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->empty());
}

TEST(hw_nvidia_smi, NameWithCommaIsKept) {
  auto r = parse_nvidia_smi_csv("0, Odd, Card, 8192, 8000, 3, 8\n");
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].name, "Odd, Card");
  EXPECT_EQ((*r)[0].vram_bytes, 8192 * k_mib);
}

TEST(hw_nvidia_smi, ListedOutOfOrderIsSortedByIndex) {
  auto r = parse_nvidia_smi_csv("1, B, 100, 50, 4, 16\n0, A, 200, 50, 4, 16\n");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[0].name, "A");
  EXPECT_EQ((*r)[1].name, "B");
}

TEST(hw_nvidia_smi, BadInputNamesLineAndField) {
  auto few = parse_nvidia_smi_csv("0, NVIDIA GeForce RTX 3090, 24576, 23985, 4, 16\n1, x, 5\n");
  ASSERT_FALSE(few);
  EXPECT_NE(few.err().message.find("line 2"), std::string::npos) << few.err().message;
  EXPECT_NE(few.err().message.find("3 fields"), std::string::npos) << few.err().message;
  EXPECT_EQ(few.err().exit_code, 2);

  auto bad = parse_nvidia_smi_csv("0, X, 24 GiB, 1, 4, 16\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().message.find("line 1: field 'memory.total' = '24 GiB'"), std::string::npos)
      << bad.err().message;

  auto dup = parse_nvidia_smi_csv("0, X, 1, 1, 4, 16\n0, Y, 1, 1, 4, 16\n");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.err().message.find("index 0 appears twice"), std::string::npos) << dup.err().message;

  auto neg = parse_nvidia_smi_csv("0, X, -5, 1, 4, 16\n");
  EXPECT_FALSE(neg);
  auto huge = parse_nvidia_smi_csv("0, X, 99999999999999999999, 1, 4, 16\n");
  EXPECT_FALSE(huge);
  auto idx = parse_nvidia_smi_csv("[N/A], X, 1, 1, 4, 16\n");
  EXPECT_FALSE(idx);  // the index is never unavailable
}

TEST(hw_rocm_smi, EightMi300x) {
  auto r = parse_rocm_smi_json(fixture("rocm-smi-8x-mi300x.json"));
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->size(), 8u);
  for (int i = 0; i < 8; ++i) {
    const gpu& g = (*r)[static_cast<std::size_t>(i)];
    EXPECT_EQ(g.index, i);
    EXPECT_EQ(g.vendor, gpu_vendor::amd);
    EXPECT_EQ(g.name, "AMD Instinct MI300X");
    EXPECT_EQ(g.vram_bytes, 205822885888u);
    EXPECT_EQ(g.free_vram_bytes, 205822885888u - (293879808u + static_cast<std::uint64_t>(i) * 1048576u));
  }
}

TEST(hw_rocm_smi, RadeonAndIntegratedWithSystemKey) {
  auto r = parse_rocm_smi_json(fixture("rocm-smi-radeon-igpu.json"));
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->size(), 2u);  // "system" is not a card
  EXPECT_EQ((*r)[0].name, "Navi 31 [Radeon RX 7900 XTX]");
  EXPECT_EQ((*r)[0].vram_bytes, 25753026560u);
  EXPECT_EQ((*r)[0].free_vram_bytes, 25753026560u - 1238396928u);
  EXPECT_EQ((*r)[1].name, "RAPHAEL");              // "Card series" N/A: falls back to the SKU
  EXPECT_EQ((*r)[1].free_vram_bytes, 536870912u);  // used N/A
}

TEST(hw_rocm_smi, CardsAreOrderedNumerically) {
  auto r = parse_rocm_smi_json(R"j({"card10": {"Card series": "B", "VRAM Total Memory (B)": "2"},
                                  "card2": {"Card series": "A", "VRAM Total Memory (B)": "1"}})j");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "A");
  EXPECT_EQ((*r)[1].name, "B");
  EXPECT_EQ((*r)[1].index, 1);
}

TEST(hw_rocm_smi, BadInputIsAnError) {
  auto notjson = parse_rocm_smi_json("WARNING: AMD GPU not found");
  ASSERT_FALSE(notjson);
  EXPECT_NE(notjson.err().message.find("not JSON"), std::string::npos);
  auto arr = parse_rocm_smi_json("[1,2]");
  EXPECT_FALSE(arr);
  auto card = parse_rocm_smi_json(R"j({"card0": 5})j");
  ASSERT_FALSE(card);
  EXPECT_NE(card.err().message.find("\"card0\""), std::string::npos);
  auto vram = parse_rocm_smi_json(R"j({"card0": {"VRAM Total Memory (B)": "lots"}})j");
  ASSERT_FALSE(vram);
  EXPECT_NE(vram.err().message.find("\"card0\".\"VRAM Total Memory (B)\" = 'lots'"), std::string::npos)
      << vram.err().message;
  auto empty = parse_rocm_smi_json("{}");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(hw_cpuinfo, TwoSocketXeonWithHyperThreading) {
  auto r = parse_cpuinfo(fixture("cpuinfo-xeon-2s-ht.txt"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->model, "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz");
  EXPECT_EQ(r->threads, 8);
  EXPECT_EQ(r->cores, 4);  // 2 sockets x 2 cores; (physical id, core id) pairs
  EXPECT_DOUBLE_EQ(r->mhz, 4800.0);
  EXPECT_EQ(r->flops_per_cycle_per_core, 64);
}

TEST(hw_cpuinfo, ArmWithoutModelName) {
  auto r = parse_cpuinfo(fixture("cpuinfo-arm-neoverse.txt"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->threads, 4);
  EXPECT_EQ(r->cores, 4);
  EXPECT_EQ(r->model, "ARM CPU part 0xd0c");
  EXPECT_EQ(r->mhz, 0);
  EXPECT_EQ(r->flops_per_cycle_per_core, 16);
}

TEST(hw_cpuinfo, VmWithoutCoreIds) {
  auto r = parse_cpuinfo(fixture("cpuinfo-vm-no-core-ids.txt"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->threads, 6);
  EXPECT_EQ(r->cores, 6);
  EXPECT_EQ(r->flops_per_cycle_per_core, 32);  // avx2 + fma
}

TEST(hw_cpuinfo, BadInput) {
  auto none = parse_cpuinfo("vendor_id : x\n");
  ASSERT_FALSE(none);
  EXPECT_NE(none.err().message.find("no 'processor'"), std::string::npos);
  auto bad = parse_cpuinfo("processor : zero\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().message.find("line 1"), std::string::npos);
}

TEST(hw_meminfo, ModernKernel) {
  auto r = parse_meminfo(fixture("meminfo-64g.txt"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->total_bytes, 65757812ull * 1024);
  EXPECT_EQ(r->available_bytes, 58911020ull * 1024);
}

TEST(hw_meminfo, OldKernelWithoutMemAvailable) {
  auto r = parse_meminfo(fixture("meminfo-old-kernel.txt"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->available_bytes, (1200000ull + 200000 + 3000000) * 1024);
}

TEST(hw_meminfo, BadInput) {
  EXPECT_FALSE(parse_meminfo(""));
  auto bad = parse_meminfo("MemTotal: lots kB\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().message.find("line 1"), std::string::npos);
  auto nocolon = parse_meminfo("MemTotal 5 kB\n");
  EXPECT_FALSE(nocolon);
}

TEST(hw_pcie, BandwidthPerGeneration) {
  EXPECT_DOUBLE_EQ(pcie_bandwidth_bytes_per_s(3, 16), 0.985e9 * 16);
  EXPECT_DOUBLE_EQ(pcie_bandwidth_bytes_per_s(4, 16), 1.969e9 * 16);
  EXPECT_DOUBLE_EQ(pcie_bandwidth_bytes_per_s(3, 1), 0.985e9);
  EXPECT_EQ(pcie_bandwidth_bytes_per_s(0, 16), 0);
  EXPECT_EQ(pcie_bandwidth_bytes_per_s(4, 0), 0);
}

}  // namespace
}  // namespace agifarm::hw
