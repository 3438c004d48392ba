// server_args: the part of a llama-server command line that decides memory placement, parsed the way
// llama.cpp's common/arg.cpp parses it (same flags, same defaults as llama-server of the bundled
// llama.cpp). Flags that do not affect memory are accepted and ignored; unknown flags are kept in
// `ignored` so callers can warn.
//
// Contract: parse_server_args never throws or aborts; bad values return an error naming the flag and
// its position (exit code 2). Pure function, thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/ot_rules.hpp"
#include "common/result.hpp"

namespace agifarm::plan {

enum class split_mode { none, layer, row };

struct tensor_override {
  std::string pattern;  // ECMAScript regex searched in tensor names (std::regex_search, as llama.cpp)
  std::string buffer;   // buffer type name: "CPU", "CUDA0", "RPC0[127.0.0.1:50052]", ...
};

struct server_args {
  std::string model;                // -m
  std::int64_t ctx = 0;             // -c; 0: the model's training context
  int n_parallel = -1;              // -np; -1: auto (llama-server uses 4 slots and a unified KV cache)
  int n_gpu_layers = -1;            // -ngl; -1 auto, -2 all; both mean "all layers" for the estimate
  std::vector<float> tensor_split;  // -ts
  split_mode split = split_mode::layer;
  int main_gpu = 0;                            // -mg
  std::vector<tensor_override> overrides;      // -ot, --cpu-moe, --n-cpu-moe, --n-cpu-ffn, in order
  std::string type_k = "f16", type_v = "f16";  // -ctk / -ctv
  std::string flash_attn = "auto";             // -fa on|off|auto
  int n_batch = 2048, n_ubatch = 512;
  bool kv_unified = false;     // -kvu; set by auto -np too
  bool no_kv_offload = false;  // -nkvo
  bool swa_full = false;       // --swa-full: sliding-window layers keep the whole context
  bool no_mmap = false;
  std::vector<std::string> rpc;      // --rpc host:port,...
  std::vector<std::string> ignored;  // flags accepted but not modelled
  // Outputs the compute graph is reserved for. llama-server reserves one per slot (no speculative
  // decoding); llama-fit-params (and llama-cli) reserve a whole micro-batch: set 0 to model those.
  int n_outputs_max =
      -1;  // -1: llama-server (= slots), 0: llama-fit-params (n_ubatch outputs, size-only reserve)
  // The values llama-server really uses: n_parallel resolved (auto -> 4 + unified).
  int slots() const { return n_parallel < 0 ? 4 : n_parallel; }
  bool unified() const { return kv_unified || n_parallel < 0; }
};

result<server_args> parse_server_args(std::span<const std::string> args);

// The regexes llama.cpp's --cpu-moe / --n-cpu-moe N write (k_ffn_exps_regex: common/ot_rules.hpp).
std::string ffn_exps_block_regex(int layer);  // "blk\\.N\\.ffn_(up|down|gate|gate_up)_(ch|)exps"

}  // namespace agifarm::plan
