// Differential (integration): for every model of data/models.yaml and every mix agifarm knows, the
// type our port of the quantizer chooses for each tensor equals what llama.cpp's own quantizer code
// chooses. llama.cpp exposes its choice (llama_tensor_get_type over a list of tensors) in
// src/llama-ext.h as llama_quant_compute_types(); we call it from the cached libllama.so with
// ggml tensors of the real shapes (no data), so this covers the full-size models, not only small ones.
#include <ggml.h>
#include <gtest/gtest.h>
#include <llama.h>

#include <memory>

#include "gguf/gguf.hpp"
#include "llama-ext.h"
#include "synth/quant_mix.hpp"
#include "synth/shape.hpp"
#include "synth/shape_catalogue.hpp"

namespace agifarm::synth {
namespace {

std::string type_name(std::uint32_t t) {
  const auto* i = gguf::find_type(t);
  if (i) return std::string(i->name);
  std::string s(1, '?');
  s += std::to_string(t);
  return s;
}

struct ggml_ctx_deleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
struct model_deleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};

// llama.cpp's choice for `tensors` of model `m` at `mix`.
std::vector<std::uint32_t> llama_choice(const model_entry& m, quant_mix mix,
                                        const std::vector<quant_tensor>& tensors) {
  ggml_init_params ip{};
  ip.mem_size = (tensors.size() + 8) * ggml_tensor_overhead();
  ip.no_alloc = true;
  std::unique_ptr<ggml_context, ggml_ctx_deleter> ctx(ggml_init(ip));
  std::vector<ggml_tensor*> ts;
  for (const auto& t : tensors) {
    std::int64_t ne[4] = {1, 1, 1, 1};
    for (std::size_t i = 0; i < t.shape.size(); ++i) ne[i] = static_cast<std::int64_t>(t.shape[i]);
    ggml_tensor* g = ggml_new_tensor(ctx.get(), static_cast<ggml_type>(t.source_type),
                                     static_cast<int>(t.shape.size()), ne);
    ggml_set_name(g, t.name.c_str());
    ts.push_back(g);
  }
  // what llama-quantize reads from the file: block_count and head counts as written (quant_model_of)
  const quant_model qm = quant_model_of(m);
  llama_quant_model_desc desc{};
  // llama-quantize learns the model size from load_hparams (qwen2, deci, olmo with 80 blocks are
  // LLM_TYPE_70B there, which promotes attn_v); llama_quant_model_from_metadata infers 70B only for
  // "llama". Ask as "llama" for those: the other arch-dependent rules (falcon, bailingmoe3) do not apply.
  const bool seventy_b_by_hparams =
      (m.arch == "qwen2" || m.arch == "deci" || m.arch == "olmo") && qm.n_layer == 80;
  desc.architecture = seventy_b_by_hparams && qm.n_head != qm.n_head_kv ? "llama" : m.arch.c_str();
  desc.n_embd = m.n_embd;
  desc.n_ff = m.n_ff;
  desc.n_layer = qm.n_layer;
  desc.n_head = qm.n_head;
  desc.n_head_kv = qm.n_head_kv;
  desc.n_expert = qm.n_expert;
  desc.n_embd_head_k = m.head_dim;
  desc.n_embd_head_v = m.head_dim;
  std::unique_ptr<llama_model, model_deleter> model(llama_quant_model_from_metadata(&desc));
  llama_model_quantize_params params = llama_model_quantize_default_params();
  params.ftype = static_cast<llama_ftype>(info(mix).llama_ftype);
  quantize_state_impl* qs = llama_quant_init(model.get(), &params);
  std::vector<ggml_type> out(ts.size());
  llama_quant_compute_types(qs, params.ftype, ts.data(), out.data(), ts.size());
  llama_quant_free(qs);
  return {out.begin(), out.end()};
}

void expect_same_choice(const model_entry& m, quant_mix mix, const std::vector<quant_tensor>& tensors) {
  auto ours = choose_types(quant_model_of(m), mix, tensors);
  ASSERT_TRUE(ours.ok()) << ours.err().message;
  const auto theirs = llama_choice(m, mix, tensors);
  ASSERT_EQ(ours->size(), theirs.size());
  int mismatches = 0;
  for (std::size_t i = 0; i < theirs.size(); ++i) {
    if ((*ours)[i] != theirs[i] && ++mismatches <= 10)
      ADD_FAILURE() << m.id << " " << to_string(mix) << " " << tensors[i].name << ": agifarm "
                    << type_name((*ours)[i]) << ", llama.cpp " << type_name(theirs[i]);
  }
  EXPECT_EQ(mismatches, 0) << m.id << " " << to_string(mix);
}

TEST(shape_quant_llama, every_catalogue_model_and_mix_matches_llama_cpp) {
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);  // fallback warnings are expected
  auto cat = load_model_catalogue(std::string(AGIFARM_SOURCE_DIR) + "/data/models.yaml");
  ASSERT_TRUE(cat.ok()) << cat.err().message;
  int checked = 0;
  for (const auto& m : *cat) {
    const auto tensors = source_tensors(m);
    for (const auto& mi : all_quant_mixes()) {
      SCOPED_TRACE(m.id + " " + std::string(mi.name));
      expect_same_choice(m, mi.mix, tensors);
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(cat->size() * all_quant_mixes().size()));
}

// Shapes that exercise the rules the catalogue's models do not: rows not divisible by 256 or 32
// (fallbacks), 8 experts (the Mixtral rules), few layers, GQA below 4.
TEST(shape_quant_llama, odd_shapes_match_llama_cpp) {
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  std::vector<model_entry> odd;
  model_entry a;
  a.id = "odd-dense";
  a.arch = "qwen3";
  a.n_layer = 5;
  a.n_embd = 320;  // % 256 != 0, % 32 == 0
  a.n_ff = 1000;   // % 32 != 0: F16 for ffn_down
  a.n_head = 4;
  a.n_head_kv = 4;
  a.head_dim = 80;
  a.n_vocab = 999;
  a.qk_norm = true;
  a.tied_embeddings = true;
  odd.push_back(a);
  model_entry b = a;
  b.id = "eight-experts";
  b.arch = "qwen3moe";
  b.n_embd = 512;
  b.n_expert = 8;
  b.n_expert_used = 2;
  b.n_ff_exp = 256;
  b.n_layer = 9;
  b.tied_embeddings = false;
  b.head_dim = 64;
  b.n_head_kv = 1;
  odd.push_back(b);
  model_entry c = b;
  c.id = "llama-like-70b";
  c.arch = "llama";
  c.n_expert = c.n_expert_used = c.n_ff_exp = 0;
  c.n_layer = 80;
  c.n_embd = 256;
  c.n_ff = 768;
  c.n_head = 8;
  c.n_head_kv = 2;
  c.head_dim = 32;
  c.rope_freqs = true;
  c.qk_norm = false;
  odd.push_back(c);
  for (const auto& m : odd)
    for (const auto& mi : all_quant_mixes()) {
      SCOPED_TRACE(m.id + " " + std::string(mi.name));
      expect_same_choice(m, mi.mix, source_tensors(m));
    }
}

}  // namespace
}  // namespace agifarm::synth
