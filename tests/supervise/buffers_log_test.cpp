// The buffer lines of real llama-server logs (llama.cpp of node-llama-cpp 3.22.1, -lv 4): tiny Qwen3 on
// one ggml-rpc-server device, and tiny qwen35moe (recurrent state) on the CPU.
#include "supervise/buffers_log.hpp"

#include <gtest/gtest.h>

namespace agifarm::supervise {
namespace {

constexpr double mib = 1024.0 * 1024.0;

constexpr std::string_view k_rpc_log = R"(0.00.960.320 I load_tensors: offloading output layer to GPU
0.00.960.350 I load_tensors:   CPU_Mapped model buffer size =    37.09 MiB
0.00.960.351 I load_tensors: RPC0[127.0.0.1:18940] model buffer size =    37.85 MiB
0.01.608.167 I llama_context:        CPU  output buffer size =     1.16 MiB
0.01.853.989 I llama_kv_cache: RPC0[127.0.0.1:18940] KV buffer size =     0.25 MiB
0.01.853.990 I llama_kv_cache: size =    0.25 MiB (   512 cells,   6 layers,  2/2 seqs), K (f16):    0.12 MiB, V (f16):    0.12 MiB
0.01.857.012 I sched_reserve: RPC0[127.0.0.1:18940] compute buffer size =     3.26 MiB
0.01.857.027 I sched_reserve:        CPU compute buffer size =     0.76 MiB
0.01.892.639 I srv  llama_server: model loaded
)";

constexpr std::string_view k_recurrent_log =
    R"(0.01.791.246 I load_tensors:   CPU_Mapped model buffer size =    75.42 MiB
0.01.795.421 I llama_context:        CPU  output buffer size =     1.16 MiB
0.01.795.473 I llama_kv_cache:        CPU KV buffer size =     0.50 MiB
0.01.795.512 I llama_memory_recurrent:        CPU RS buffer size =     0.04 MiB
0.01.850.263 I sched_reserve:        CPU compute buffer size =     3.55 MiB
)";

std::uint64_t b(double m) { return static_cast<std::uint64_t>(m * mib + 0.5); }

TEST(buffers_log, rpc_device_and_host_from_a_real_log) {
  auto r = parse_buffers_log(k_rpc_log);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.lines, 6);
  ASSERT_EQ(r.devices.size(), 2u);
  EXPECT_EQ(r.devices[0].device, "RPC0[127.0.0.1:18940]");
  EXPECT_EQ(device_key(r.devices[0].device), "RPC0");
  EXPECT_EQ(r.devices[0].model_bytes, b(37.85));
  EXPECT_EQ(r.devices[0].kv_bytes, b(0.25));
  EXPECT_EQ(r.devices[0].compute_bytes, b(3.26));
  EXPECT_EQ(r.devices[1].device, "host");
  EXPECT_EQ(r.devices[1].model_bytes, b(37.09));
  EXPECT_EQ(r.devices[1].kv_bytes, 0u);
  EXPECT_EQ(r.devices[1].compute_bytes, b(1.16) + b(0.76));  // output + compute
  EXPECT_EQ(r.devices[1].total(), b(37.09) + b(1.16) + b(0.76));
}

TEST(buffers_log, recurrent_state_counts_as_kv) {
  auto r = parse_buffers_log(k_recurrent_log);
  ASSERT_EQ(r.devices.size(), 1u);
  EXPECT_EQ(r.devices[0].device, "host");
  EXPECT_EQ(r.devices[0].kv_bytes, b(0.50) + b(0.04));
  EXPECT_EQ(r.devices[0].compute_bytes, b(1.16) + b(3.55));
}

TEST(buffers_log, a_restart_starts_over) {
  std::string log = std::string("[agifarm] start #1: llama-server ...\n") + std::string(k_rpc_log) +
                    "[agifarm] start #2: llama-server ...\n" + std::string(k_recurrent_log);
  auto r = parse_buffers_log(log);
  ASSERT_EQ(r.devices.size(), 1u);
  EXPECT_EQ(r.devices[0].model_bytes, b(75.42));
  // without a marker, a model buffer after a compute buffer is a new load too
  auto r2 = parse_buffers_log(std::string(k_rpc_log) + std::string(k_recurrent_log));
  ASSERT_EQ(r2.devices.size(), 1u);
  EXPECT_EQ(r2.devices[0].model_bytes, b(75.42));
}

TEST(buffers_log, an_unfinished_load_is_not_complete) {
  auto r = parse_buffers_log("0.00.960.350 I load_tensors:        CUDA0 model buffer size =  1024.00 MiB\n");
  EXPECT_FALSE(r.complete);
  ASSERT_EQ(r.devices.size(), 1u);
  EXPECT_EQ(r.devices[0].device, "CUDA0");
  EXPECT_EQ(r.devices[0].model_bytes, 1024ull << 20);
}

TEST(buffers_log, host_buffer_types) {
  EXPECT_TRUE(is_host_buffer("CPU"));
  EXPECT_TRUE(is_host_buffer("CPU_Mapped"));
  EXPECT_TRUE(is_host_buffer("CPU_REPACK"));
  EXPECT_TRUE(is_host_buffer("CUDA_Host"));
  EXPECT_FALSE(is_host_buffer("CUDA0"));
  EXPECT_FALSE(is_host_buffer("RPC1[10.0.0.2:50052]"));
  EXPECT_FALSE(is_host_buffer("Vulkan0"));
}

TEST(buffers_log, garbage_is_skipped) {
  auto r = parse_buffers_log(
      "compute buffer size = lots MiB\n model buffer size = 12\n: CUDA0 model buffer size = -3 MiB\n"
      "x: CUDA0 weird buffer size = 1 MiB\nbuffer size = 1 MiB\n: CUDA0 model buffer size = nan MiB\n"
      "\n\n: CUDA0 model buffer size = 1e400 MiB");
  EXPECT_TRUE(r.devices.empty());
  EXPECT_EQ(r.lines, 0);
  EXPECT_FALSE(r.complete);
  EXPECT_TRUE(parse_buffers_log("").devices.empty());
}

}  // namespace
}  // namespace agifarm::supervise
