// cache_layout: the per-layer KV / recurrent state llama.cpp builds, from GGUF keys written here the
// way the converters write them; and the context column estimate_memory derives from it. Expected
// values follow llama.cpp's llama_hparams / llama_kv_cache_iswa / llama_memory_recurrent formulas.
#include "plan/cache_layout.hpp"

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "gguf/writer.hpp"
#include "plan/memory_model.hpp"

namespace agifarm::plan {
namespace {

using gguf::key_value;

struct file_builder {
  std::string arch;
  std::vector<key_value> kv;
  file_builder(std::string a) : arch(std::move(a)) {
    kv.push_back({"general.architecture", gguf::make_string(arch)});
  }
  file_builder& u32(const std::string& k, std::uint32_t v) {
    kv.push_back({arch + "." + k, gguf::make_u32(v)});
    return *this;
  }
  file_builder& arr(const std::string& k, const std::vector<std::uint32_t>& v) {
    std::vector<gguf::value> items;
    for (auto x : v) items.push_back(gguf::make_u32(x));
    kv.push_back({arch + "." + k, gguf::make_array(gguf::value_type::uint32, items)});
    return *this;
  }
  file_builder& flags(const std::string& k, const std::vector<bool>& v) {
    std::vector<gguf::value> items;
    for (bool x : v) items.push_back(gguf::make_bool(x));
    kv.push_back({arch + "." + k, gguf::make_array(gguf::value_type::boolean, items)});
    return *this;
  }
  gguf::file build() const {
    gguf::writer_input in;
    in.metadata = kv;
    auto h = gguf::serialize_header(in);
    EXPECT_TRUE(h) << (h ? "" : h.err().message);
    gguf::read_options o;
    o.check_data_extent = false;
    auto f = gguf::parse(h->bytes, arch, o);
    EXPECT_TRUE(f) << (f ? "" : f.err().message);
    return *f;
  }
};

int count(const cache_layout& c, bool (*pred)(const layer_cache&)) {
  int n = 0;
  for (const auto& l : c.layers) n += pred(l);
  return n;
}

TEST(cache_layout, gpt_oss_every_other_layer_is_a_128_token_window) {
  // gpt-oss-20b: 24 blocks, 64 heads, 8 KV heads of 64, sliding_window 128 (pattern 2: even layers).
  auto f = file_builder("gpt-oss")
               .u32("block_count", 24)
               .u32("embedding_length", 2880)
               .u32("attention.head_count", 64)
               .u32("attention.head_count_kv", 8)
               .u32("attention.key_length", 64)
               .u32("attention.value_length", 64)
               .u32("attention.sliding_window", 128)
               .build();
  auto c = cache_layout_of(f);
  ASSERT_EQ(c.layers.size(), 24u);
  EXPECT_EQ(c.n_swa, 128u);
  EXPECT_TRUE(c.layers[0].swa);
  EXPECT_FALSE(c.layers[1].swa);
  EXPECT_EQ(count(c, [](const layer_cache& l) { return l.kv && l.swa; }), 12);
  EXPECT_EQ(c.layers[1].n_embd_k, 512u);
  EXPECT_EQ(c.layers[1].n_embd_v, 512u);
  EXPECT_FALSE(c.mla);
}

TEST(cache_layout, gemma3_five_local_layers_then_one_global_and_none_without_a_window) {
  auto b = file_builder("gemma3")
               .u32("block_count", 62)
               .u32("embedding_length", 5376)
               .u32("attention.head_count", 32)
               .u32("attention.head_count_kv", 16)
               .u32("attention.key_length", 128)
               .u32("attention.value_length", 128);
  auto plain = cache_layout_of(b.build());
  EXPECT_FALSE(plain.any_swa());  // gemma3 without sliding_window: every layer global
  b.u32("attention.sliding_window", 1024);
  auto c = cache_layout_of(b.build());
  EXPECT_EQ(c.n_swa, 1024u);
  for (int il = 0; il < 62; ++il) EXPECT_EQ(c.layers[il].swa, il % 6 < 5) << il;
  // an explicit per-layer pattern wins over the architecture's default
  b.flags("attention.sliding_window_pattern", std::vector<bool>(62, true));
  EXPECT_EQ(count(cache_layout_of(b.build()), [](const layer_cache& l) { return l.swa; }), 62);
}

TEST(cache_layout, qwen35moe_three_linear_attention_layers_to_one_full) {
  // Qwen3.5-35B-A3B: 40 blocks, full attention every 4th, gated delta net state per sequence.
  auto f = file_builder("qwen35moe")
               .u32("block_count", 40)
               .u32("embedding_length", 2048)
               .u32("attention.head_count", 16)
               .u32("attention.head_count_kv", 2)
               .u32("attention.key_length", 256)
               .u32("attention.value_length", 256)
               .u32("full_attention_interval", 4)
               .u32("ssm.conv_kernel", 4)
               .u32("ssm.inner_size", 4096)
               .u32("ssm.state_size", 128)
               .u32("ssm.group_count", 16)
               .u32("ssm.time_step_rank", 32)
               .build();
  auto c = cache_layout_of(f);
  ASSERT_EQ(c.layers.size(), 40u);
  EXPECT_EQ(count(c, [](const layer_cache& l) { return l.recurrent; }), 30);
  EXPECT_EQ(count(c, [](const layer_cache& l) { return l.kv; }), 10);
  EXPECT_TRUE(c.layers[3].kv);
  EXPECT_TRUE(c.layers[0].recurrent);
  EXPECT_FALSE(c.layers[0].kv);
  EXPECT_EQ(c.layers[0].n_embd_r,
            3u * (4096 + 2 * 16 * 128));         // (d_conv - 1) * (d_inner + 2 n_group d_state)
  EXPECT_EQ(c.layers[0].n_embd_s, 128u * 4096);  // d_state * d_inner
  EXPECT_EQ(c.layers[3].n_embd_k, 512u);
}

TEST(cache_layout, deepseek_mla_keeps_one_compressed_row_and_no_v) {
  auto f = file_builder("deepseek2")
               .u32("block_count", 61)
               .u32("embedding_length", 7168)
               .u32("attention.head_count", 128)
               .u32("attention.head_count_kv", 1)
               .u32("attention.key_length", 576)
               .u32("attention.value_length", 512)
               .u32("attention.key_length_mla", 192)
               .u32("attention.value_length_mla", 128)
               .build();
  auto c = cache_layout_of(f);
  EXPECT_TRUE(c.mla);
  EXPECT_EQ(c.layers[0].n_embd_k, 576u);
  EXPECT_FALSE(c.layers[0].has_v);
}

TEST(cache_layout, next_token_layers_and_per_layer_kv_heads) {
  auto f = file_builder("glm4moe")
               .u32("block_count", 4)
               .u32("embedding_length", 512)
               .u32("attention.head_count", 8)
               .arr("attention.head_count_kv", {2, 4, 2, 2})
               .u32("attention.key_length", 64)
               .u32("attention.value_length", 64)
               .u32("nextn_predict_layers", 1)
               .build();
  auto c = cache_layout_of(f);
  ASSERT_EQ(c.layers.size(), 4u);
  EXPECT_TRUE(c.layers[2].kv);
  EXPECT_FALSE(c.layers[3].kv);  // the next-token layer: no cache in the main context
  EXPECT_EQ(c.layers[1].n_embd_k, 256u);
  EXPECT_EQ(c.layers[0].n_embd_k, 128u);
  EXPECT_EQ(c.n_embd_v_max(), 256u);
}

TEST(cache_layout, an_unknown_architecture_keeps_full_attention_unless_it_states_its_window_layers) {
  auto b = file_builder("mystery")
               .u32("block_count", 8)
               .u32("embedding_length", 512)
               .u32("attention.head_count", 8)
               .u32("attention.sliding_window", 256);
  EXPECT_FALSE(
      cache_layout_of(b.build()).any_swa());  // a window without its layers: llama.cpp may not use it
  b.flags("attention.sliding_window_pattern", {true, false, true, false, true, false, true, false});
  auto c = cache_layout_of(b.build());
  EXPECT_EQ(count(c, [](const layer_cache& l) { return l.swa; }), 4);
  EXPECT_EQ(c.layers[0].n_embd_k, 512u);  // head size n_embd / n_head when key_length is absent
}

// ---- the context column ------------------------------------------------------------------------------

server_args args_of(std::vector<std::string> a) {
  auto r = parse_server_args(a);
  EXPECT_TRUE(r) << (r ? "" : r.err().message);
  return *r;
}

model_shape with_layout(cache_layout c) {
  auto s = fixtures::make_shape(c.layers.size(), 1 << 20, 1 << 20);
  s.cache = std::move(c);
  return s;
}

TEST(cache_layout_memory, sliding_window_layers_hold_window_times_sequences_plus_a_micro_batch) {
  auto f = file_builder("gpt-oss")
               .u32("block_count", 24)
               .u32("embedding_length", 2880)
               .u32("attention.head_count", 64)
               .u32("attention.head_count_kv", 8)
               .u32("attention.key_length", 64)
               .u32("attention.value_length", 64)
               .u32("attention.sliding_window", 128)
               .build();
  auto shape = with_layout(cache_layout_of(f));
  const std::uint64_t cell = 2 * 512 * 2;  // K + V rows of 512 f16
  {
    auto e = estimate_memory(shape, args_of({"-c", "32768", "-np", "1", "-fa", "on"}), {});
    ASSERT_TRUE(e);
    // 12 full layers x 32768 cells + 12 window layers x pad(128 + 512, 256) = 768 cells
    EXPECT_EQ(e->host.context_bytes, 12 * cell * 32768 + 12 * cell * 768);
    EXPECT_EQ(e->swa_cells, 768u);
  }
  {  // 4 unified slots: the window of each sequence
    auto e = estimate_memory(shape, args_of({"-c", "32768", "-np", "4", "-kvu", "-fa", "on"}), {});
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host.context_bytes, 12 * cell * 32768 + 12 * cell * 1024);  // pad(4*128 + 512, 256)
  }
  {  // 4 streams: each holds one window
    auto e = estimate_memory(shape, args_of({"-c", "32768", "-np", "4", "-fa", "on"}), {});
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host.context_bytes, 12 * cell * 8192 * 4 + 12 * cell * 768 * 4);
  }
  {  // --swa-full: every layer the whole context
    auto e = estimate_memory(shape, args_of({"-c", "32768", "-np", "1", "-fa", "on", "--swa-full"}), {});
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host.context_bytes, 24 * cell * 32768);
  }
}

TEST(cache_layout_memory, recurrent_state_is_per_sequence_and_mla_has_no_v) {
  auto q = file_builder("qwen35moe")
               .u32("block_count", 8)
               .u32("embedding_length", 2048)
               .u32("attention.head_count", 16)
               .u32("attention.head_count_kv", 2)
               .u32("attention.key_length", 256)
               .u32("attention.value_length", 256)
               .u32("ssm.conv_kernel", 4)
               .u32("ssm.inner_size", 4096)
               .u32("ssm.state_size", 128)
               .u32("ssm.group_count", 16)
               .build();
  auto shape = with_layout(cache_layout_of(q));
  const std::uint64_t state = (3ull * (4096 + 2 * 16 * 128) + 128ull * 4096) * 4;
  for (int np : {1, 3}) {
    auto e =
        estimate_memory(shape, args_of({"-c", "4096", "-np", std::to_string(np), "-kvu", "-fa", "on"}), {});
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host.context_bytes, 2 * (512 * 2 * 2) * 4096 + 6 * state * np) << np;
    EXPECT_EQ(e->recurrent_state_bytes.back(), 6 * state);
  }
  auto d = file_builder("deepseek2")
               .u32("block_count", 4)
               .u32("embedding_length", 2048)
               .u32("attention.head_count", 16)
               .u32("attention.head_count_kv", 1)
               .u32("attention.key_length", 576)
               .u32("attention.value_length", 512)
               .u32("attention.key_length_mla", 192)
               .u32("attention.value_length_mla", 128)
               .build();
  auto e =
      estimate_memory(with_layout(cache_layout_of(d)), args_of({"-c", "8192", "-np", "1", "-fa", "on"}), {});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host.context_bytes, 4ull * 576 * 2 * 8192);
  // a q8_0 K cache: 576 elements = 18 blocks of 34 bytes
  e = estimate_memory(with_layout(cache_layout_of(d)),
                      args_of({"-c", "8192", "-np", "1", "-fa", "on", "-ctk", "q8_0", "-ctv", "q8_0"}), {});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host.context_bytes, 4ull * 18 * 34 * 8192);
  // llama_init_from_model refuses an MLA model with different K and V types; so does the estimate
  e = estimate_memory(with_layout(cache_layout_of(d)),
                      args_of({"-c", "8192", "-np", "1", "-fa", "on", "-ctk", "q8_0"}), {});
  ASSERT_FALSE(e);
  EXPECT_NE(e.err().message.find("MLA"), std::string::npos) << e.err().message;
  EXPECT_NE(e.err().message.find("-ctv"), std::string::npos) << e.err().message;
}

TEST(cache_layout_memory, without_flash_attention_v_rows_are_the_widest_of_any_layer) {
  auto f = file_builder("glm4moe")
               .u32("block_count", 2)
               .u32("embedding_length", 512)
               .u32("attention.head_count", 8)
               .arr("attention.head_count_kv", {2, 4})
               .u32("attention.key_length", 64)
               .u32("attention.value_length", 64)
               .build();
  auto shape = with_layout(cache_layout_of(f));
  auto on = estimate_memory(shape, args_of({"-c", "1024", "-np", "1", "-fa", "on"}), {});
  auto off = estimate_memory(shape, args_of({"-c", "1024", "-np", "1", "-fa", "off"}), {});
  ASSERT_TRUE(on && off);
  EXPECT_EQ(on->host.context_bytes, (128 + 128 + 256 + 256) * 2 * 1024ull);
  EXPECT_EQ(off->host.context_bytes, (128 + 256 + 256 + 256) * 2 * 1024ull);
}

}  // namespace
}  // namespace agifarm::plan
