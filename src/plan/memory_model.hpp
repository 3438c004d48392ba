// memory_model: predicts, for one llama-server command line on a given set of devices, the bytes
// each device and the host hold, in exactly the three columns of llama.cpp's own memory breakdown
// (common_memory_breakdown_print): model (weight buffers), context (KV cache), compute (scheduler
// compute buffers). The rules and formulas are written down in docs/planning.md:
//  - weights: llama_model::load_tensors — token embeddings on the host, repeating layers split over
//    the devices by -ts (or free memory) after the first n_layer+1-ngl layers that stay on the host,
//    the output layer on the device of "layer n_layer", -ot / --cpu-moe / --n-cpu-moe rules first;
//  - KV cache: llama_context + llama_kv_cache — n_ctx padded to 256, per stream n_ctx/np padded to 256
//    unless unified, K/V rows of n_embd_k_gqa / n_embd_v_gqa elements of the cache type, on the
//    device of the layer (host with -nkvo); sliding-window layers hold min(n_ctx_seq, window * seqs +
//    n_ubatch) cells (llama_kv_cache_iswa), MLA layers K only, recurrent layers a fixed f32 state per
//    sequence (plan/cache_layout.hpp);
//  - compute: llama.cpp's worst-case graph reserve replayed node by node (plan/compute_graph.hpp):
//    the model graph of one micro-batch, the scheduler's splits and input copies, ggml-alloc's peak.
//
// Contract: pure functions of plain data, thread-safe. model_shape_of never fails on an unknown
// architecture: it falls back to generic hyperparameters and sets `known_architecture = false`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "gguf/gguf.hpp"
#include "plan/cache_layout.hpp"
#include "plan/deployment.hpp"
#include "plan/server_args.hpp"

namespace agifarm::plan {

struct shape_tensor {
  std::string name;
  std::uint64_t bytes = 0;
  int block = -1;  // blk.N, or -1
  gguf::tensor_class cls = gguf::tensor_class::other;
  std::uint32_t type = 0;  // ggml type (the speed model's per-type CPU rates)
  std::uint64_t n_elements = 0;
};

// What the memory and speed models need to know of a model.
struct model_shape {
  std::string name, architecture, file;
  std::string quant;  // the weight type holding the most bytes ("Q4_K")
  bool known_architecture = true;
  std::uint64_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
  std::uint64_t n_vocab = 0, n_ctx_train = 0, n_ff = 0, n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
  std::uint64_t n_params = 0, file_bytes = 0;
  bool has_output_tensor = true;  // false: tied embeddings, token_embd duplicated as the output
  // build_moe_ffn's router as the architecture's builder calls it: 0 softmax, 1 sigmoid, 2 softmax over
  // the selected experts (gpt-oss); whether the selected weights are normalised to sum 1
  int moe_gating = 0;
  bool moe_norm_weights = true;
  bool attn_temp_scale = false;     // <arch>.attention.temperature_scale > 0 (mistral3): Q scaled per token
  std::uint64_t n_layer_nextn = 0;  // trailing next-token (MTP) blocks: llama.cpp skips their tensors
  cache_layout cache;               // per-layer KV / recurrent state; empty: every layer full attention
  // llama.cpp's compute buffers over agifarm's generic replay, measured once for an architecture whose
  // graph agifarm does not replay (fit/fit.hpp, calibrate_compute); 0: not measured.
  struct compute_scale_t {
    double device = 0, host = 0;
    std::string source;  // what measured it
  } compute_scale;
  std::vector<shape_tensor> tensors;
  std::vector<std::string> warnings;

  std::uint64_t n_embd_k_gqa() const { return head_dim_k * n_head_kv; }
  std::uint64_t n_embd_v_gqa() const { return head_dim_v * n_head_kv; }
  bool is_moe() const { return n_expert > 0; }
  std::uint64_t bytes_of(gguf::tensor_class c) const;
  std::uint64_t layer_bytes(int layer) const;
  std::uint64_t layer_expert_bytes(int layer) const;
};

model_shape model_shape_of(const gguf::model& m);
// Whether estimate_memory replays this architecture's graph (compute column exact); others get a
// generic compute estimate, and `agifarm estimate` asks llama.cpp itself (fit/fit.hpp) when it can.
bool replays_graph_exactly(const std::string& architecture);
result<model_shape> load_model_shape(const std::string& path);

// A device as llama.cpp sees it: its name (CUDA0, RPC0, ...), the buffer names that address it in -ot
// rules, and its free memory (the default -ts split is proportional to it).
struct device_desc {
  std::string name;
  std::vector<std::string> buffer_names;  // e.g. {"CUDA0"} or {"RPC0[127.0.0.1:50052]"}
  std::uint64_t free_bytes = 0;
  bool offloads_ops = false;  // CUDA-like backends copy host weights in for big batches (op offload)
};

struct memory_estimate {
  std::vector<device_memory> devices;  // same order as the input devices
  device_memory host{"host"};
  std::uint64_t output_buffer_bytes = 0;  // host logits/embeddings buffer (not in the breakdown)
  std::uint32_t n_ctx = 0;                // total KV cells after padding
  std::uint32_t n_ctx_seq = 0;            // cells per sequence
  std::uint32_t n_stream = 1;
  int n_slots = 1;
  bool flash_attn = true;
  std::vector<int> layer_device;  // per repeating layer and the output layer (size n_layer+1): -1 host
  int expert_layers_on_host = 0;  // layers whose expert tensors are in system RAM
  // Weight bytes read per decoded token live here, per input device and the host (last entry):
  // dense = every weight but token_embd (one row per token) and experts; expert = expert tensors.
  std::vector<std::uint64_t> dense_weight_bytes, expert_weight_bytes;
  std::vector<int> layers_on_device;          // repeating layers per input device, host last
  std::uint64_t kv_bytes_per_cell_layer = 0;  // K + V bytes of one cell in one full-attention layer
  // What decoding one token at depth d reads of the cache, per input device and the host (last entry):
  // kv_full_bytes_per_cell * d + kv_swa_bytes_per_cell * min(d, n_swa) + recurrent_state_bytes.
  std::vector<std::uint64_t> kv_full_bytes_per_cell, kv_swa_bytes_per_cell, recurrent_state_bytes;
  std::uint32_t n_swa = 0;
  std::uint32_t swa_cells = 0;  // cells per stream of the sliding-window layers (0: none)
  std::vector<std::string> warnings;
};

// Predicts the breakdown for `args` (the model in `shape`) on `devices`. Errors (exit 2): an -ot buffer
// that names no device, a regex that does not compile, a model declaring more than 4096 layers.
result<memory_estimate> estimate_memory(const model_shape& shape, const server_args& args,
                                        const std::vector<device_desc>& devices);

// Bytes of one KV row of `n` elements of cache type `type` ("f16", "q8_0", ...).
std::uint64_t kv_row_bytes(const std::string& type, std::uint64_t n);

}  // namespace agifarm::plan
