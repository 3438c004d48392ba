// Unit tests of the GGUF reader on crafted bytes: every accept and reject branch.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gguf/gguf.hpp"
#include "gguf/writer.hpp"

namespace agifarm::gguf {
namespace {

// Raw little-endian byte builder for headers the writer refuses to make.
struct bytes {
  std::vector<std::byte> b;
  template <class T>
  bytes& put(T v) {
    auto p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  bytes& str(const std::string& s) {
    put<std::uint64_t>(s.size());
    for (char c : s) b.push_back(static_cast<std::byte>(c));
    return *this;
  }
  bytes& magic(const char* m = "GGUF") {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::byte>(m[i]));
    return *this;
  }
  bytes& pad_to(std::size_t n) {
    b.resize(std::max(b.size(), n));
    return *this;
  }
  std::span<const std::byte> span() const { return b; }
};

bytes header(std::uint32_t version, std::uint64_t n_tensors, std::uint64_t n_kv) {
  bytes x;
  x.magic().put<std::uint32_t>(version).put<std::uint64_t>(n_tensors).put<std::uint64_t>(n_kv);
  return x;
}

std::vector<std::byte> serialize(const writer_input& in, bool with_data = true) {
  auto h = serialize_header(in);
  EXPECT_TRUE(h.ok());
  auto out = h->bytes;
  if (with_data) out.resize(out.size() + h->data_bytes);
  return out;
}

writer_input every_type_input() {
  writer_input in;
  auto kv = [&](std::string k, value v) { in.metadata.push_back({std::move(k), std::move(v)}); };
  kv("general.architecture", make_string("qwen3"));
  kv("t.u8", make_u8(200));
  kv("t.i8", make_i8(-100));
  kv("t.u16", make_u16(60000));
  kv("t.i16", make_i16(-30000));
  kv("t.u32", make_u32(4000000000u));
  kv("t.i32", make_i32(-2000000000));
  kv("t.u64", make_u64(1ull << 60));
  kv("t.i64", make_i64(-(1ll << 60)));
  kv("t.f32", make_f32(1.5f));
  kv("t.f64", make_f64(-2.25));
  kv("t.bool", make_bool(true));
  kv("t.str", make_string("héllo"));
  kv("t.strs", make_string_array({"a", "", "ccc"}));
  kv("t.nested", make_array(value_type::array, {make_array(value_type::int32, {make_i32(1), make_i32(2)}),
                                                make_array(value_type::int32, {})}));
  kv("t.empty", make_array(value_type::float32, {}));
  in.tensors.push_back({"token_embd.weight", {64, 10}, 1});
  in.tensors.push_back({"blk.0.attn_q.weight", {256, 4}, 12});
  in.tensors.push_back({"blk.0.ffn_gate_exps.weight", {32, 8, 4}, 8});
  return in;
}

TEST(gguf_reader, round_trips_every_value_type_v3_and_v2) {
  for (std::uint32_t version : {2u, 3u}) {
    auto in = every_type_input();
    in.version = version;
    auto buf = serialize(in);
    auto f = parse(buf, "mem.gguf");
    ASSERT_TRUE(f.ok()) << f.err().message;
    EXPECT_EQ(f->version, version);
    EXPECT_EQ(f->metadata.size(), in.metadata.size());
    EXPECT_EQ(*f->get_uint("t.u8"), 200u);
    EXPECT_EQ(*f->get_number("t.i8"), -100);
    EXPECT_EQ(*f->get_uint("t.u16"), 60000u);
    EXPECT_EQ(*f->get_number("t.i16"), -30000);
    EXPECT_EQ(*f->get_uint("t.u32"), 4000000000u);
    EXPECT_EQ(*f->get_number("t.i32"), -2000000000);
    EXPECT_EQ(*f->get_uint("t.u64"), 1ull << 60);
    EXPECT_EQ(std::get<std::int64_t>(f->find("t.i64")->data), -(1ll << 60));
    EXPECT_EQ(*f->get_number("t.f32"), 1.5);
    EXPECT_EQ(*f->get_number("t.f64"), -2.25);
    EXPECT_EQ(std::get<bool>(f->find("t.bool")->data), true);
    EXPECT_EQ(*f->get_string("t.str"), "héllo");
    auto* strs = f->find("t.strs")->as_array();
    ASSERT_TRUE(strs && strs->materialized);
    ASSERT_EQ(strs->items.size(), 3u);
    EXPECT_EQ(*strs->items[2].as_string(), "ccc");
    auto* nested = f->find("t.nested")->as_array();
    ASSERT_TRUE(nested);
    EXPECT_EQ(nested->element_type, value_type::array);
    ASSERT_EQ(nested->items.size(), 2u);
    EXPECT_EQ(nested->items[0].as_array()->items[1].type, value_type::int32);
    EXPECT_EQ(*nested->items[0].as_array()->items[1].as_number(), 2);
    EXPECT_EQ(nested->items[1].as_array()->count, 0u);
    ASSERT_EQ(f->tensors.size(), 3u);
    EXPECT_EQ(f->tensors[1].name, "blk.0.attn_q.weight");
    EXPECT_EQ(f->tensors[1].n_bytes, 144u * 4);
    EXPECT_EQ(f->tensors[2].shape, (std::vector<std::uint64_t>{32, 8, 4}));
    EXPECT_EQ(f->tensors[2].n_bytes, 34u * 8 * 4);
    EXPECT_EQ(f->data_offset % 32, 0u);
    EXPECT_EQ(f->tensors[1].offset, 64u * 10 * 2);  // 1280, already aligned
  }
}

TEST(gguf_reader, long_arrays_are_counted_not_materialized) {
  writer_input in;
  std::vector<std::string> many(5000, "tok");
  in.metadata.push_back({"tokenizer.ggml.tokens", make_string_array(many)});
  std::vector<value> nums(5000, make_i32(7));
  in.metadata.push_back({"t.nums", make_array(value_type::int32, nums)});
  auto buf = serialize(in);
  auto f = parse(buf, "mem");
  ASSERT_TRUE(f.ok());
  auto* a = f->find("tokenizer.ggml.tokens")->as_array();
  EXPECT_EQ(a->count, 5000u);
  EXPECT_FALSE(a->materialized);
  EXPECT_TRUE(a->items.empty());
  EXPECT_FALSE(f->find("t.nums")->as_array()->materialized);
  read_options all;
  all.max_array_elements = UINT64_MAX;
  auto g = parse(buf, "mem", all);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->find("tokenizer.ggml.tokens")->as_array()->items.size(), 5000u);
}

TEST(gguf_reader, custom_alignment_moves_data_section) {
  writer_input in;
  in.metadata.push_back({"general.alignment", make_u32(256)});
  in.tensors.push_back({"a", {3}, 0});
  in.tensors.push_back({"b", {5}, 0});
  auto buf = serialize(in);
  auto f = parse(buf, "mem");
  ASSERT_TRUE(f.ok()) << f.err().message;
  EXPECT_EQ(f->alignment, 256u);
  EXPECT_EQ(f->data_offset % 256, 0u);
  EXPECT_EQ(f->tensors[1].offset, 256u);
}

void expect_error(std::span<const std::byte> b, const std::string& needle, read_options opt = {}) {
  auto f = parse(b, "bad.gguf", opt);
  ASSERT_FALSE(f.ok()) << "expected an error containing: " << needle;
  EXPECT_EQ(f.err().exit_code, 2);
  EXPECT_NE(f.err().message.find("bad.gguf: at byte "), std::string::npos) << f.err().message;
  EXPECT_NE(f.err().message.find(needle), std::string::npos) << f.err().message;
}

TEST(gguf_reader, every_truncation_of_a_valid_file_is_an_error) {
  auto buf = serialize(every_type_input());
  for (std::size_t n = 0; n < buf.size(); ++n) {
    auto f = parse(std::span<const std::byte>(buf.data(), n), "bad.gguf");
    ASSERT_FALSE(f.ok()) << "prefix " << n;
    EXPECT_NE(f.err().message.find("at byte"), std::string::npos);
  }
}

TEST(gguf_reader, wrong_magic) {
  expect_error(bytes().magic("GGML").put<std::uint32_t>(3).pad_to(64).span(), "wrong magic 'GGML'");
}
TEST(gguf_reader, version_1) { expect_error(header(1, 0, 0).span(), "version 1 is not supported"); }
TEST(gguf_reader, version_99) { expect_error(header(99, 0, 0).span(), "unsupported GGUF version 99"); }
TEST(gguf_reader, big_endian_version_hint) { expect_error(header(0x03000000, 0, 0).span(), "big-endian"); }
TEST(gguf_reader, tensor_count_overflow) { expect_error(header(3, UINT64_MAX, 0).span(), "tensor count"); }
TEST(gguf_reader, kv_count_overflow) { expect_error(header(3, 0, UINT64_MAX / 2).span(), "metadata count"); }

TEST(gguf_reader, string_length_past_end) {
  auto b = header(3, 0, 1);
  b.put<std::uint64_t>(1ull << 40);  // key length
  b.pad_to(b.b.size() + 16);
  expect_error(b.span(), "metadata key has length 1099511627776");
}

TEST(gguf_reader, string_value_past_end) {
  auto b = header(3, 0, 1);
  b.str("k").put<std::uint32_t>(8).put<std::uint64_t>(1000).pad_to(b.b.size() + 10);
  expect_error(b.span(), "string value has length 1000");
}

TEST(gguf_reader, array_count_overflow) {
  auto b = header(3, 0, 1);
  b.str("k")
      .put<std::uint32_t>(9)
      .put<std::uint32_t>(6)
      .put<std::uint64_t>(UINT64_MAX / 2)
      .pad_to(b.b.size() + 64);
  expect_error(b.span(), "cannot fit");
}

TEST(gguf_reader, unknown_value_type) {
  auto b = header(3, 0, 1);
  b.str("k").put<std::uint32_t>(13).pad_to(b.b.size() + 8);
  expect_error(b.span(), "unknown value type 13");
}

TEST(gguf_reader, bad_bool) {
  auto b = header(3, 0, 1);
  b.str("k").put<std::uint32_t>(7).put<std::uint8_t>(2).pad_to(b.b.size() + 8);
  expect_error(b.span(), "neither 0 nor 1");
}

TEST(gguf_reader, empty_and_duplicate_keys) {
  auto b = header(3, 0, 1);
  b.str("").put<std::uint32_t>(0).put<std::uint8_t>(1).pad_to(b.b.size() + 8);
  expect_error(b.span(), "is empty");
  auto d = header(3, 0, 2);
  d.str("k")
      .put<std::uint32_t>(0)
      .put<std::uint8_t>(1)
      .str("k")
      .put<std::uint32_t>(0)
      .put<std::uint8_t>(1)
      .pad_to(d.b.size() + 8);
  expect_error(d.span(), "duplicate metadata key 'k'");
}

TEST(gguf_reader, deep_nesting_is_bounded) {
  auto b = header(3, 0, 1);
  b.str("k");
  b.put<std::uint32_t>(9);
  for (int i = 0; i < 40; ++i) b.put<std::uint32_t>(9).put<std::uint64_t>(1);
  b.pad_to(b.b.size() + 64);
  expect_error(b.span(), "nested deeper");
}

TEST(gguf_reader, alignment_must_be_u32_power_of_two) {
  auto b = header(3, 0, 1);
  b.str("general.alignment").put<std::uint32_t>(10).put<std::uint64_t>(64).pad_to(b.b.size() + 8);
  expect_error(b.span(), "must be u32");
  auto c = header(3, 0, 1);
  c.str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(48).pad_to(c.b.size() + 8);
  expect_error(c.span(), "not a power of 2");
}

bytes one_tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type,
                 std::uint64_t offset, std::size_t file_size = 4096) {
  auto b = header(3, 1, 0);
  b.str(name).put<std::uint32_t>(static_cast<std::uint32_t>(dims.size()));
  for (auto d : dims) b.put<std::uint64_t>(d);
  b.put<std::uint32_t>(type).put<std::uint64_t>(offset);
  b.pad_to(file_size);
  return b;
}

TEST(gguf_reader, tensor_checks) {
  EXPECT_TRUE(parse(one_tensor("w", {32, 2}, 0, 0).span(), "ok").ok());
  expect_error(one_tensor("w", {32, 2}, 4, 0).span(), "unknown ggml type id 4");
  expect_error(one_tensor("w", {32, 2}, 77, 0).span(), "unknown ggml type id 77");
  expect_error(one_tensor("w", {}, 0, 0).span(), "has 0 dimensions");
  expect_error(one_tensor("w", {1, 1, 1, 1, 1}, 0, 0).span(), "has 5 dimensions");
  expect_error(one_tensor("w", {1ull << 62, 1ull << 62}, 0, 0).span(), "element count overflows");
  expect_error(one_tensor("w", {UINT64_MAX}, 0, 0).span(), "element count overflows");
  expect_error(one_tensor("w", {100, 2}, 12, 0).span(), "not a multiple of Q4_K's block size 256");
  expect_error(one_tensor("w", {32, 2}, 0, 16).span(), "offset 16 is not a multiple of the alignment 32");
  expect_error(one_tensor("w", {32, 2}, 0, 4096).span(), "extends past the end of the file");
  expect_error(one_tensor("w", {1024, 1024}, 0, 0).span(), "extends past the end of the file");
  expect_error(one_tensor(std::string(70, 'x'), {32}, 0, 0).span(), "longer than 63 bytes");
  read_options no_extent;
  no_extent.check_data_extent = false;
  EXPECT_TRUE(parse(one_tensor("w", {1024, 1024}, 0, 0).span(), "ok", no_extent).ok());
}

TEST(gguf_reader, byte_size_overflow_is_caught) {
  // 2^62 elements of F32 = 2^64 bytes: the element count fits int64 but the byte size does not.
  expect_error(one_tensor("w", {1ull << 31, 1ull << 31}, 0, 0).span(), "byte size overflows");
}

TEST(gguf_reader, duplicate_tensor_names) {
  auto b = header(3, 2, 0);
  for (int i = 0; i < 2; ++i)
    b.str("w").put<std::uint32_t>(1).put<std::uint64_t>(32).put<std::uint32_t>(0).put<std::uint64_t>(i * 128);
  b.pad_to(4096);
  expect_error(b.span(), "duplicate tensor name 'w'");
}

TEST(gguf_reader, data_section_past_end) {
  auto b = header(3, 1, 0);
  b.str("w").put<std::uint32_t>(1).put<std::uint64_t>(0 + 32).put<std::uint32_t>(0).put<std::uint64_t>(0);
  expect_error(b.span(), "data section would start");
}

TEST(gguf_tensor_class, names_map_to_classes) {
  EXPECT_EQ(classify("token_embd.weight"), tensor_class::token_embd);
  EXPECT_EQ(classify("output.weight"), tensor_class::output);
  EXPECT_EQ(classify("output_norm.weight"), tensor_class::norm);
  EXPECT_EQ(classify("blk.3.attn_q.weight"), tensor_class::attention);
  EXPECT_EQ(classify("blk.3.attn_qkv.weight"), tensor_class::attention);
  EXPECT_EQ(classify("blk.3.attn_k_norm.weight"), tensor_class::norm);
  EXPECT_EQ(classify("blk.3.ffn_down.weight"), tensor_class::ffn_dense);
  EXPECT_EQ(classify("blk.3.ffn_up_exps.weight"), tensor_class::ffn_expert);
  EXPECT_EQ(classify("blk.3.ffn_up_shexp.weight"), tensor_class::ffn_shared_expert);
  EXPECT_EQ(classify("blk.3.ffn_gate_inp_shexp.weight"), tensor_class::ffn_shared_expert);
  EXPECT_EQ(classify("blk.3.ffn_gate_inp.weight"), tensor_class::other);
  EXPECT_EQ(classify("rope_freqs.weight"), tensor_class::other);
  EXPECT_EQ(block_index("blk.17.attn_q.weight"), 17);
  EXPECT_EQ(block_index("blk.x.attn_q.weight"), std::nullopt);
  EXPECT_EQ(block_index("blk.12"), std::nullopt);
  EXPECT_EQ(block_index("output.weight"), std::nullopt);
}

TEST(gguf_types, table_matches_ggml_block_layout) {
  EXPECT_EQ(find_type("q4_k")->type_size, 144u);
  EXPECT_EQ(find_type("Q6_K")->block_size, 256u);
  EXPECT_EQ(find_type("MXFP4")->type_size, 17u);
  EXPECT_EQ(find_type("TQ1_0")->type_size, 54u);
  EXPECT_EQ(find_type("IQ4_XS")->type_size, 136u);
  EXPECT_EQ(find_type(30)->name, "BF16");
  EXPECT_EQ(find_type(4), nullptr);  // Q4_2: removed from ggml
  EXPECT_EQ(find_type("nope"), nullptr);
}

class split_model : public ::testing::Test {
 protected:
  std::string dir = ::testing::TempDir() + "agifarm-split-" + std::to_string(::getpid());
  void SetUp() override { std::filesystem::create_directories(dir); }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string part(int i, int n) { return dir + "/m-" + fmt(i) + "-of-" + fmt(n) + ".gguf"; }
  static std::string fmt(int i) {
    char b[16];
    std::snprintf(b, sizeof b, "%05d", i);
    return b;
  }
  void write_parts(int n) {
    for (int i = 0; i < n; ++i) {
      writer_input in;
      if (i == 0) in.metadata.push_back({"general.architecture", make_string("qwen3")});
      in.metadata.push_back({"split.no", make_u16(static_cast<std::uint16_t>(i))});
      in.metadata.push_back({"split.count", make_u16(static_cast<std::uint16_t>(n))});
      in.metadata.push_back({"split.tensors.count", make_i32(n * 2)});
      in.tensors.push_back({"blk." + std::to_string(i) + ".attn_q.weight", {64, 2}, 0});
      in.tensors.push_back({"blk." + std::to_string(i) + ".ffn_up.weight", {64, 4}, 1});
      ASSERT_TRUE(write_file(part(i + 1, n), in).ok());
    }
  }
};

TEST_F(split_model, parts_are_read_as_one_model) {
  write_parts(3);
  auto m = read_model(part(1, 3));
  ASSERT_TRUE(m.ok()) << m.err().message;
  EXPECT_EQ(m->parts.size(), 3u);
  auto s = summarize(*m);
  EXPECT_EQ(s.n_tensors, 6u);
  EXPECT_EQ(s.n_split, 3u);
  EXPECT_EQ(s.n_params, 3u * (128 + 256));
  EXPECT_EQ(s.tensor_bytes_by_class["attention"], 3u * 64 * 2 * 4);
  EXPECT_EQ(s.tensor_bytes_by_class["ffn_dense"], 3u * 64 * 4 * 2);
}

TEST_F(split_model, missing_part_is_named) {
  write_parts(3);
  std::filesystem::remove(part(2, 3));
  auto m = read_model(part(1, 3));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.err().exit_code, 2);
  EXPECT_NE(m.err().message.find("split part 2 of 3 is missing"), std::string::npos) << m.err().message;
  EXPECT_NE(m.err().message.find(part(2, 3)), std::string::npos);
}

TEST(gguf_writer, sparse_file_is_exact_but_small) {
  std::string path = ::testing::TempDir() + "agifarm-sparse-" + std::to_string(::getpid()) + ".gguf";
  writer_input in;
  in.metadata.push_back({"general.architecture", make_string("llama")});
  in.tensors.push_back({"blk.0.ffn_up.weight", {8192, 262144}, 12});  // 1.2 GB of Q4_K
  ASSERT_TRUE(write_file(path, in).ok());
  auto f = read_file(path);
  ASSERT_TRUE(f.ok()) << f.err().message;
  EXPECT_EQ(f->file_size, f->data_offset + 8192ull / 256 * 144 * 262144);
  struct stat st {};
  ::stat(path.c_str(), &st);
  EXPECT_LT(static_cast<std::uint64_t>(st.st_blocks) * 512, 1u << 20) << "data section must be a hole";
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace agifarm::gguf
