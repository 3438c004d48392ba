// parse_fit_output: llama-fit-params' memory breakdown, as llama.cpp prints it (lines copied from
// its output over two loopback RPC devices), and what is not one.
#include <gtest/gtest.h>

#include "fit/fit.hpp"

namespace agifarm::fit {
namespace {

constexpr std::uint64_t k_mib = 1024ull * 1024ull;

const char* k_two_devices =
    "0.00.010.815 I llama_fit_params: printing estimated memory in MiB to stdout (device, model, context, "
    "compute) ...\n"
    "0.01.018.329 I common_memory_breakdown_print: | memory breakdown [MiB]     | total    free    self   "
    "model   context   compute    unaccounted |\n"
    "0.01.018.341 I common_memory_breakdown_print: |   - RPC0 (127.0.0.1:50931) | 24105 = 24105 + (  40 =    "
    " 0 +       4 +      35) +         -40 |\n"
    "0.01.018.342 I common_memory_breakdown_print: |   - RPC1 (127.0.0.1:50932) | 24105 = 24105 + ( 335 =    "
    "37 +       0 +     298) +        -335 |\n"
    "0.01.018.343 I common_memory_breakdown_print: |   - Host                   |                    69 =    "
    "37 +       0 +      32                |\n"
    "0.01.018.344 I common_memory_breakdown_print: |   - CPU_REPACK             |                    10 =    "
    "10 +       0 +       0                |\n"
    "RPC0 0 4 35\n";

TEST(fit_output, reads_every_device_and_sums_host_buffer_types) {
  auto b = parse_fit_output(k_two_devices, 2);
  ASSERT_TRUE(b) << b.err().message;
  ASSERT_EQ(b->devices.size(), 2u);
  EXPECT_EQ(b->devices[0].name, "RPC0");
  EXPECT_EQ(b->devices[0].model_bytes, 0u);
  EXPECT_EQ(b->devices[0].context_bytes, 4 * k_mib);
  EXPECT_EQ(b->devices[0].compute_bytes, 35 * k_mib);
  EXPECT_EQ(b->devices[1].compute_bytes, 298 * k_mib);
  EXPECT_EQ(b->devices[1].total_bytes, 335 * k_mib);
  EXPECT_EQ(b->host.model_bytes, 47 * k_mib);  // Host + CPU_REPACK
  EXPECT_EQ(b->host.compute_bytes, 32 * k_mib);
}

TEST(fit_output, a_device_llama_cpp_did_not_list_is_empty_and_an_unknown_one_is_an_error) {
  auto b = parse_fit_output(k_two_devices, 3);
  ASSERT_TRUE(b) << b.err().message;
  EXPECT_EQ(b->devices[2].total_bytes, 0u);
  auto one = parse_fit_output(k_two_devices, 1);
  ASSERT_FALSE(one);
  EXPECT_NE(one.err().message.find("RPC1"), std::string::npos) << one.err().message;
  EXPECT_NE(one.err().message.find("line 4"), std::string::npos) << one.err().message;
}

TEST(fit_output, no_table_or_a_broken_row_is_an_error_that_says_so) {
  auto none = parse_fit_output("llama_model_load: error loading model\n", 0);
  ASSERT_FALSE(none);
  EXPECT_NE(none.err().message.find("no memory breakdown"), std::string::npos);
  auto broken =
      parse_fit_output("x common_memory_breakdown_print: |   - Host   |   69 = 37 + zero + 32 |\n", 0);
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.err().message.find("Host"), std::string::npos) << broken.err().message;
  auto no_host = parse_fit_output(
      "x common_memory_breakdown_print: |   - RPC0 (a) | 1 = 1 + ( 3 = 1 + 1 + 1) + 0 |\n", 1);
  ASSERT_FALSE(no_host);
}

}  // namespace
}  // namespace agifarm::fit
