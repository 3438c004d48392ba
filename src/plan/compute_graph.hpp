// compute_graph: predicts llama.cpp's compute buffers (the "compute" column of its memory breakdown)
// from first principles, by replaying what llama.cpp does when it reserves the worst-case prompt
// graph (llama_context::sched_reserve -> graph_reserve -> ggml_backend_sched_reserve_size):
//  1. builds the ggml graph of one micro-batch as llama.cpp's model builders do (Qwen3, Qwen3-MoE,
//     Llama: node shapes, types, views, the order of ggml_build_forward_expand and of ggml's
//     depth-first visit), every tensor with its exact byte size;
//  2. assigns each node a backend with ggml_backend_sched_split_graph's five passes (weights pull
//     their ops, GPU backends expand up and down, CPU last), cuts the graph into splits and adds the
//     copies of every input that crosses backends (4 copies of each with pipeline parallelism);
//  3. allocates the copied graph with ggml-alloc's rules (inputs and leafs first, in-place reuse of a
//     parent with one consumer, freeing after the last consumer, best-fit free blocks, the
//     alignment of the buffer type) and returns the high-water mark of each backend's buffer.
// Sources: src/llama-graph.cpp, src/models/{qwen3,qwen3moe,llama}.cpp, src/llama-kv-cache.cpp,
// ggml/src/ggml-backend.cpp, ggml/src/ggml-alloc.c of llama.cpp (docs/planning.md, "compute").
//
// Contract: a pure function of plain data; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace agifarm::plan {

// Where the weights of one repeating layer live: a backend slot (0..n_devices-1 a device, -1 the
// host) and the byte size of each tensor (0: the model has no such tensor).
struct layer_weights {
  struct w {
    int slot = -1;
    std::uint64_t bytes = 0;
  };
  w attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm, up, gate, down, gate_inp, up_exps, gate_exps,
      down_exps, rope_freqs;
  // what llama.cpp's builders add for newer architectures (build_moe_ffn's optional tensors)
  w gate_inp_b, exp_probs_b, up_exps_b, gate_exps_b, down_exps_b;  // router / selection / expert biases
  w up_shexp, gate_shexp, down_shexp, gate_inp_shexp;              // shared expert and its sigmoid gate
  w wq_a, q_a_norm, wq_b, wkv_a, kv_a_norm, wk_b,
      wv_b;          // MLA (deepseek2): low-rank Q, compressed KV, absorbed K/V
  bool moe = true;   // routed experts (when the spec is MoE); false: a leading dense block
  bool swa = false;  // sliding-window layer: the window cache and the SWA mask
};

struct compute_graph_spec {
  // model
  bool moe = false, qk_norm = false;
  bool attn_temp_scale = false;  // Q multiplied by a per-token temperature (mistral3 / llama4)
  std::int64_t n_embd = 0, n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0, n_ff = 0;
  std::int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0, n_vocab = 0;
  std::int64_t n_ff_shexp = 0;  // width of the shared expert (0: none)
  // MLA with the absorption of deepseek2.cpp (flash attention): K cache rows of kv_lora_rank + n_rot,
  // V read from K, wv_b applied after attention
  bool mla = false;
  std::int64_t kv_lora_rank = 0, q_lora_rank = 0, n_rot = 0, head_dim_nope = 0, head_dim_v_mla = 0;
  enum class gating { softmax, sigmoid, softmax_weight } gating_op = gating::softmax;
  bool norm_weights = true;  // the selected experts' weights are normalised to sum 1
  std::vector<layer_weights> layers;
  layer_weights::w token_embd, output, output_norm;
  // the reserved micro-batch
  std::int64_t n_tokens = 512, n_seqs = 1, n_outputs = 1;
  std::int64_t kv_size = 0;      // cells per stream
  std::int64_t swa_kv_size = 0;  // cells per stream of the sliding-window layers (their own cache and mask)
  std::int64_t n_stream = 1;     // KV streams (1 when unified)
  bool flash_attn = true;
  std::string type_k = "f16", type_v = "f16";
  // placement
  int n_devices = 0;
  std::vector<int> layer_device;   // per repeating layer: its KV cache and forced norms; -1 host
  bool kv_on_host = false;         // -nkvo
  bool pipeline_parallel = false;  // 4 copies of every input (GGML_SCHED_MAX_COPIES)
  // llama.cpp's graph callback pins each layer's RMS norms to the layer's device when
  // n_gpu_layers > n_layer or the batch has < 32 tokens. llama-fit-params' size-only reservation
  // (ggml_backend_sched_reserve_size) resets the scheduler after the graph is built, dropping the
  // pins; a real context (llama-server) keeps them.
  bool full_offload = false;
  bool pins_dropped = false;
  std::vector<bool> offload_ops;  // per device: CUDA-like op offload of host weights for batches >= 32
  std::vector<std::uint64_t> device_alignment;  // per device buffer alignment (default 32; CUDA 128)
};

// Bytes of the compute buffer of each device (index 0..n_devices-1) and of the host (last entry).
std::vector<std::uint64_t> simulate_compute_buffers(const compute_graph_spec& spec);

}  // namespace agifarm::plan
