// The CPU catalogue (data/cpus.yaml): parsing, matching model strings, and what an inventory node
// takes from it (and what it never takes: this machine's measurement).
#include <fstream>
#include <sstream>

#include "hw_test_util.hpp"

namespace agifarm::hw {
namespace {

catalogue with_cpus() {
  catalogue cat = test::real_catalogue();
  std::ifstream in(std::string(AGIFARM_SOURCE_DIR) + "/data/cpus.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  auto cpus = parse_cpu_catalogue(ss.str(), "cpus.yaml");
  if (!cpus)
    ADD_FAILURE() << cpus.err().message;
  else
    cat.cpus = *cpus;
  return cat;
}

TEST(hw_cpu_catalogue, ShippedCatalogueParsesAndMatchesModelStrings) {
  const catalogue cat = with_cpus();
  EXPECT_GE(cat.cpus.size(), 25u);
  const cpu_model_spec* r = cat.match_cpu("AMD Ryzen 9 5900X 12-Core Processor");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->id, "ryzen9-5900x");
  EXPECT_DOUBLE_EQ(r->bandwidth_bytes_per_s, 51.2e9);
  const cpu_model_spec* tr = cat.match_cpu("AMD Ryzen Threadripper 3970X 32-Core Processor");
  ASSERT_NE(tr, nullptr);
  EXPECT_EQ(tr->id, "threadripper-3970x");
  EXPECT_DOUBLE_EQ(tr->peak_flops(), 32 * 3.7e9 * 32);  // not the 500 GFLOP/s default
  // the longest match wins: "Threadripper PRO 7985WX" is not a plain 7985WX lookalike
  const cpu_model_spec* pro = cat.match_cpu("AMD Ryzen Threadripper PRO 7985WX 64-Cores");
  ASSERT_NE(pro, nullptr);
  EXPECT_EQ(pro->id, "threadripper-pro-7985wx");
  EXPECT_EQ(cat.match_cpu("Intel(R) Pentium(R) 4 CPU 3.00GHz"), nullptr);
  for (const auto& c : cat.cpus) {
    EXPECT_GT(c.peak_flops(), 0) << c.id;
    EXPECT_GT(c.bandwidth_bytes_per_s, 1e9) << c.id;
  }
}

TEST(hw_cpu_catalogue, ErrorsNameTheFileAndPlace) {
  auto bad = parse_cpu_catalogue(
      "cpus:\n  - {id: x, match: [x], cores: 0, ghz: 3, flops_per_cycle: 32, bandwidth_gbs: 50}\n", "c.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.err().message.rfind("c.yaml:2:", 0), 0u) << bad.err().message;
  EXPECT_NE(bad.err().message.find("cores"), std::string::npos);
  auto nomatch = parse_cpu_catalogue(
      "cpus:\n  - {id: x, cores: 4, ghz: 3, flops_per_cycle: 32, bandwidth_gbs: 50}\n", "c.yaml");
  ASSERT_FALSE(nomatch);
  EXPECT_NE(nomatch.err().message.find("match"), std::string::npos);
  EXPECT_FALSE(parse_cpu_catalogue("cpus: [", "c.yaml"));
}

TEST(hw_cpu_catalogue, InventoryNodeTakesTheCataloguesFiguresNotThisMachines) {
  const catalogue cat = with_cpus();
  auto inv = parse_inventory(R"(nodes:
  - name: tr
    cpu: {model: "AMD Ryzen Threadripper 3970X 32-Core Processor", cores: 32}
    ram_gb: 256
  - name: odd
    cpu: {model: "Some Unknown CPU", cores: 8}
    ram_gb: 32
  - name: declared
    cpu: {model: "AMD Ryzen 9 5900X", cores: 12, ghz: 4.0}
    ram_gb: 64
    ram_bandwidth_gbs: 45
)",
                             "inv.yaml", cat);
  ASSERT_TRUE(inv) << inv.err().message;
  const node& tr = inv->nodes[0];
  EXPECT_EQ(tr.cpu_catalogue_id, "threadripper-3970x");
  EXPECT_DOUBLE_EQ(tr.cpu_peak_flops, 32 * 3.7e9 * 32);
  EXPECT_EQ(tr.cpu_flops_source, "cpu catalogue threadripper-3970x");
  EXPECT_DOUBLE_EQ(tr.ram_bandwidth_bytes_per_s, 102.4e9);
  EXPECT_EQ(tr.ram_bandwidth_source, "cpu catalogue threadripper-3970x");
  // unknown CPU: the generic default, marked as such (plans warn), never a measurement
  const node& odd = inv->nodes[1];
  EXPECT_EQ(odd.cpu_peak_flops, 0);
  EXPECT_EQ(odd.ram_bandwidth_source, "catalogue");
  EXPECT_DOUBLE_EQ(odd.ram_bandwidth_bytes_per_s, cat.cpu.ram_bandwidth_bytes_per_s);
  // declared figures win; the catalogue supplies the FMA width for the declared clock
  const node& dec = inv->nodes[2];
  EXPECT_DOUBLE_EQ(dec.cpu_peak_flops, 12 * 4.0e9 * 32);
  EXPECT_EQ(dec.cpu_flops_source, "declared");
  EXPECT_DOUBLE_EQ(dec.ram_bandwidth_bytes_per_s, 45e9);
  for (const auto& n : inv->nodes) EXPECT_NE(n.ram_bandwidth_source, "measured") << n.name;
}

}  // namespace
}  // namespace agifarm::hw
