// fit: asks llama.cpp itself what a llama-server command line will hold, for architectures whose graph
// agifarm does not replay (plan/compute_graph.hpp covers qwen3, qwen3moe, llama). It starts one
// ggml-rpc-server per planned device on 127.0.0.1 (the devices llama.cpp splits the model over) and
// runs `llama-fit-params --fit-print on -lv 4` with the same arguments: llama.cpp loads the model's
// metadata without reading its weights, builds its memory and reserves its graphs, and prints its
// memory breakdown (common_memory_breakdown_print), which this module parses. The answer is exact for
// every architecture the llama.cpp build knows; RPC devices behave like CPU devices, so a CUDA
// device's compute buffer (op offload, 128-byte alignment) can differ by a few MiB.
//
// Contract: parse_fit_output is a pure function (fuzzed: fuzz/fit_output_fuzz.cpp). ask_llama_fit runs
// processes through supervise::process_launcher and cleans up every process it started, on every path.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "plan/deployment.hpp"
#include "plan/memory_model.hpp"
#include "supervise/process.hpp"

namespace agifarm::fit {

struct fit_breakdown {
  std::vector<plan::device_memory> devices;  // RPC0..RPCn-1, in order (MiB precision, as llama.cpp prints)
  plan::device_memory host{"host"};          // Host plus extra host buffer types (CPU_REPACK, ...)
};

// Parses the first memory breakdown table of llama-fit-params' output. `n_devices` RPC rows are
// expected (a device llama.cpp does not use, with -sm none, is all zeros); errors name the line.
result<fit_breakdown> parse_fit_output(std::string_view output, int n_devices);

struct fit_request {
  std::string llama_bin;                 // folder with llama-fit-params and ggml-rpc-server
  std::vector<std::string> server_args;  // llama-server arguments, -m included, no --rpc
  int n_devices = 1;                     // 0: the host only
  std::string work_dir;                  // logs of the processes
  std::chrono::seconds timeout{120};
};

// Runs the request. Errors (exit 1) name the tool and show the end of its log.
result<fit_breakdown> ask_llama_fit(const fit_request& req, supervise::process_launcher& launcher);

// For an architecture whose graph agifarm does not replay, asks llama.cpp once (one RPC device, the
// model's layers all on it, -c 4096 -np 1 -fa on) and sets shape.compute_scale to llama.cpp's compute
// buffers over agifarm's generic ones (clamped to 0.25..4), so every later estimate of the planner is
// scaled. Returns a note for the user: what was measured, or why it was not (no build, an error).
// work_dir "" = a temporary folder, removed afterwards. A measured model's "generic estimate" warning
// is replaced by the note.
std::string calibrate_compute(plan::model_shape& shape, const std::string& llama_bin,
                              const std::string& work_dir = "");

}  // namespace agifarm::fit
