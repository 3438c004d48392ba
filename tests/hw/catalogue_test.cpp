// The catalogue data file and its lookups.
#include "hw_test_util.hpp"

namespace agifarm::hw {
namespace {

using test::k_gib;
using test::k_mib;
using test::real_catalogue;

TEST(hw_catalogue, HasEveryCardTheProductNames) {
  const catalogue& cat = real_catalogue();
  for (const char* id : {"rtx3090", "rtx4090", "rtx5090", "rtxa6000", "rtx6000ada", "rtxpro6000", "a100-40gb",
                         "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l40s", "mi300x"}) {
    const gpu_spec* s = cat.find(id);
    ASSERT_NE(s, nullptr) << id;
    EXPECT_GT(s->vram_bytes, 0u) << id;
    EXPECT_GT(s->bandwidth_bytes_per_s, 1e11) << id;
    EXPECT_GT(s->fp16_tflops, 50) << id;
    EXPECT_GE(s->pcie_gen, 4) << id;
    EXPECT_FALSE(s->match.empty()) << id;
  }
  EXPECT_GT(cat.cpu.ram_bandwidth_bytes_per_s, 1e9);
  EXPECT_GT(cat.cpu.flops_per_cycle_per_core, 0);
}

TEST(hw_catalogue, PublishedFigures) {
  const catalogue& cat = real_catalogue();
  EXPECT_EQ(cat.find("rtx3090")->vram_bytes, static_cast<std::uint64_t>(24 * k_gib));
  EXPECT_DOUBLE_EQ(cat.find("rtx3090")->bandwidth_bytes_per_s, 936e9);
  EXPECT_DOUBLE_EQ(cat.find("rtx4090")->bandwidth_bytes_per_s, 1008e9);
  EXPECT_EQ(cat.find("rtxpro6000")->vram_bytes, static_cast<std::uint64_t>(96 * k_gib));
  EXPECT_DOUBLE_EQ(cat.find("h100-sxm")->bandwidth_bytes_per_s, 3350e9);
  EXPECT_DOUBLE_EQ(cat.find("h200")->bandwidth_bytes_per_s, 4800e9);
  EXPECT_DOUBLE_EQ(cat.find("a100-80gb")->fp16_tflops, 312);
  EXPECT_EQ(cat.find("mi300x")->vendor, gpu_vendor::amd);
}

TEST(hw_catalogue, FindIgnoresCaseSpacesAndDashesAndTakesAliases) {
  const catalogue& cat = real_catalogue();
  EXPECT_EQ(cat.find("RTX 3090")->id, "rtx3090");
  EXPECT_EQ(cat.find("rtx_4090")->id, "rtx4090");
  EXPECT_EQ(cat.find("a6000")->id, "rtxa6000");
  EXPECT_EQ(cat.find("A100-80")->id, "a100-80gb");
  EXPECT_EQ(cat.find("rtx3080")->id, "rtx3080");
  EXPECT_EQ(cat.find("rtx2060"), nullptr);
  EXPECT_EQ(cat.find(""), nullptr);
}

TEST(hw_catalogue, MatchesReportedNames) {
  const catalogue& cat = real_catalogue();
  struct tc {
    const char* reported;
    std::uint64_t mib;
    const char* id;
  } cases[] = {
      {"NVIDIA GeForce RTX 3090", 24576, "rtx3090"},
      {"NVIDIA GeForce RTX 4090", 24564, "rtx4090"},
      {"NVIDIA GeForce RTX 5090", 32607, "rtx5090"},
      {"NVIDIA RTX A6000", 49140, "rtxa6000"},
      {"NVIDIA RTX 6000 Ada Generation", 49140, "rtx6000ada"},
      {"NVIDIA RTX PRO 6000 Blackwell Workstation Edition", 97887, "rtxpro6000"},
      {"NVIDIA A100-SXM4-40GB", 40960, "a100-40gb"},
      {"NVIDIA A100 80GB PCIe", 81920, "a100-80gb-pcie"},  // the PCIe card's own entry (1935 GB/s)
      {"NVIDIA A100-SXM4-80GB", 81920, "a100-80gb"},
      {"NVIDIA GeForce RTX 3090 Ti", 24564, "rtx3090ti"},  // the longer match wins over rtx3090
      {"NVIDIA H100 80GB HBM3", 81559, "h100-sxm"},
      {"NVIDIA H100 PCIe", 81559, "h100-pcie"},
      {"NVIDIA H200", 143771, "h200"},
      {"NVIDIA L40S", 46068, "l40s"},
      {"AMD Instinct MI300X", 196288, "mi300x"},
      {"NVIDIA GeForce RTX 3090", 0, "rtx3090"},  // VRAM unknown: name alone
  };
  for (const auto& c : cases) {
    const gpu_spec* s = cat.match_reported(c.reported, c.mib * k_mib);
    ASSERT_NE(s, nullptr) << c.reported;
    EXPECT_EQ(s->id, c.id) << c.reported;
  }
}

TEST(hw_catalogue, DoesNotMatchLookalikes) {
  const catalogue& cat = real_catalogue();
  EXPECT_EQ(cat.match_reported("NVIDIA RTX A1000", 8192 * k_mib), nullptr);  // "a100" inside, VRAM says no
  EXPECT_EQ(cat.match_reported("Tesla T4", 15360 * k_mib), nullptr);
  EXPECT_EQ(cat.match_reported("NVIDIA H100 NVL", 95830 * k_mib),
            nullptr);  // 94 GB part, not in the catalogue
  EXPECT_EQ(cat.match_reported("Navi 21 [Radeon RX 6900 XT]", 17163091968u), nullptr);  // not a 6800 XT
  EXPECT_EQ(cat.match_reported("Navi 31 [Radeon RX 7900 XTX]", 25753026560u)->id, "rx7900xtx");
}

TEST(hw_catalogue, NearestByEditDistance) {
  const catalogue& cat = real_catalogue();
  auto n = cat.nearest("rtx3060", 3);
  ASSERT_EQ(n.size(), 3u);
  EXPECT_EQ(n[0], "rtx3090");
  auto h = cat.nearest("h100", 2);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_TRUE((h[0] == "h100-sxm" && h[1] == "h100-pcie") || (h[0] == "h100-pcie" && h[1] == "h100-sxm"));
  EXPECT_EQ(cat.nearest("l40", 1).at(0), "l40s");
}

TEST(hw_catalogue, BadFilesNameLineAndColumn) {
  auto missing = parse_catalogue(
      "gpus:\n  - id: x\n    vendor: nvidia\n    vram_gib: 8\n    fp16_tflops: 1\n", "c.yaml");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.err().message.find("c.yaml:2:5: key 'bandwidth_gbs': must be a number"),
            std::string::npos)
      << missing.err().message;
  auto vendor = parse_catalogue(
      "gpus:\n  - id: x\n    vendor: intel\n    vram_gib: 8\n    bandwidth_gbs: 1\n    fp16_tflops: 1\n",
      "c.yaml");
  ASSERT_FALSE(vendor);
  EXPECT_NE(vendor.err().message.find("c.yaml:3:13: key 'vendor'"), std::string::npos)
      << vendor.err().message;
  auto dup = parse_catalogue(
      "gpus:\n  - {id: x, vendor: amd, vram_gib: 8, bandwidth_gbs: 1, fp16_tflops: 1}\n"
      "  - {id: X, vendor: amd, vram_gib: 8, bandwidth_gbs: 1, fp16_tflops: 1}\n",
      "c.yaml");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.err().message.find("c.yaml:3:10: key 'id': 'X' is already defined"), std::string::npos)
      << dup.err().message;
  auto syntax = parse_catalogue("gpus: [\n", "c.yaml");
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.err().message.rfind("c.yaml:", 0), 0u) << syntax.err().message;
  EXPECT_EQ(syntax.err().exit_code, 2);
}

TEST(hw_catalogue, DataDirFromEnvironment) {
  ::setenv("AGIFARM_DATA_DIR", "/nonexistent/agifarm-data", 1);
  EXPECT_EQ(data_dir(), std::filesystem::path("/nonexistent/agifarm-data"));
  auto c = load_default_catalogue();
  ::unsetenv("AGIFARM_DATA_DIR");
  ASSERT_FALSE(c);
  EXPECT_NE(c.err().message.find("/nonexistent/agifarm-data/gpus.yaml"), std::string::npos)
      << c.err().message;
  auto real = load_default_catalogue();  // the source tree's data/
  ASSERT_TRUE(real) << real.err().message;
  EXPECT_NE(real->find("rtx3090"), nullptr);
}

}  // namespace
}  // namespace agifarm::hw
