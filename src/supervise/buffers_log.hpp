// buffers_log: the memory a llama-server really allocated, read from its log. At load it prints every
// buffer per device (with -lv 4, which the farm runner passes):
//
//   load_tensors:   CPU_Mapped model buffer size =    37.09 MiB
//   load_tensors: RPC0[127.0.0.1:18940] model buffer size =    37.85 MiB
//   llama_context:        CPU  output buffer size =     1.16 MiB
//   llama_kv_cache: RPC0[127.0.0.1:18940] KV buffer size =     0.25 MiB
//   sched_reserve:        CUDA0 compute buffer size =     3.26 MiB
//
// (each after llama.cpp's "0.01.853.989 I " time/level prefix). Host buffers (CPU, CPU_Mapped,
// CPU_REPACK, CUDA_Host, ...) are summed as the device "host", as the plan predicts them. Pure; never
// fails: lines that do not parse are skipped, and the report says whether the load was seen whole.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace agifarm::supervise {

struct device_buffers {
  std::string device;  // "CUDA0", "RPC0[127.0.0.1:18940]", "host"
  std::uint64_t model_bytes = 0;
  std::uint64_t kv_bytes = 0;       // KV cache and recurrent state
  std::uint64_t compute_bytes = 0;  // compute graph reservation plus output buffer
  std::uint64_t total() const { return model_bytes + kv_bytes + compute_bytes; }
};

struct buffers_report {
  std::vector<device_buffers> devices;  // in order of first appearance; "host" last
  bool complete = false;                // a compute buffer was seen after the model buffers
  int lines = 0;                        // buffer lines read
};

// Reads the buffer lines of the last load in `log` (a later "model buffer size" after a compute line,
// or an "[agifarm] start" marker, starts over: the backend was restarted).
buffers_report parse_buffers_log(std::string_view log);

// True for llama.cpp's host buffer types (CPU, CPU_Mapped, CPU_REPACK, CUDA_Host, Metal_Mapped, ...).
bool is_host_buffer(std::string_view buffer_type);

// The device name the plan would use: the part before '[' ("RPC0[127.0.0.1:1]" -> "RPC0"), so an RPC
// device matches whatever port it ended up on.
std::string_view device_key(std::string_view device);

}  // namespace agifarm::supervise
