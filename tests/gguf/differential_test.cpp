// Differential test: every file agifarm writes is read by agifarm's reader and by ggml's own GGUF
// reader (gguf_init_from_file with no_alloc, from the cached llama.cpp build). Metadata (keys, types,
// every value, whole arrays), tensor names, shapes, types and offsets must agree exactly.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "gguf.h"
#include "gguf/gguf.hpp"
#include "gguf/writer.hpp"
#include "support/support.hpp"

namespace agifarm::gguf {
namespace {

void compare_value(gguf_context* ref, int64_t id, const value& v, const std::string& key) {
  auto rt = gguf_get_kv_type(ref, id);
  ASSERT_EQ(static_cast<int>(rt), static_cast<int>(v.type)) << key;
  auto scalar = [&](gguf_type t, const value& x, const void* p) {
    switch (t) {
      case GGUF_TYPE_UINT8:
        EXPECT_EQ(*static_cast<const uint8_t*>(p), *x.as_uint()) << key;
        break;
      case GGUF_TYPE_INT8:
        EXPECT_EQ(*static_cast<const int8_t*>(p), std::get<std::int64_t>(x.data)) << key;
        break;
      case GGUF_TYPE_UINT16:
        EXPECT_EQ(*static_cast<const uint16_t*>(p), *x.as_uint()) << key;
        break;
      case GGUF_TYPE_INT16:
        EXPECT_EQ(*static_cast<const int16_t*>(p), std::get<std::int64_t>(x.data)) << key;
        break;
      case GGUF_TYPE_UINT32:
        EXPECT_EQ(*static_cast<const uint32_t*>(p), *x.as_uint()) << key;
        break;
      case GGUF_TYPE_INT32:
        EXPECT_EQ(*static_cast<const int32_t*>(p), std::get<std::int64_t>(x.data)) << key;
        break;
      case GGUF_TYPE_UINT64:
        EXPECT_EQ(*static_cast<const uint64_t*>(p), *x.as_uint()) << key;
        break;
      case GGUF_TYPE_INT64:
        EXPECT_EQ(*static_cast<const int64_t*>(p), std::get<std::int64_t>(x.data)) << key;
        break;
      case GGUF_TYPE_FLOAT32:
        EXPECT_EQ(*static_cast<const float*>(p), static_cast<float>(std::get<double>(x.data))) << key;
        break;
      case GGUF_TYPE_FLOAT64:
        EXPECT_EQ(*static_cast<const double*>(p), std::get<double>(x.data)) << key;
        break;
      case GGUF_TYPE_BOOL:
        EXPECT_EQ(*static_cast<const bool*>(p), std::get<bool>(x.data)) << key;
        break;
      default:
        FAIL() << key << ": unexpected scalar type";
    }
  };
  if (rt == GGUF_TYPE_STRING) {
    EXPECT_EQ(std::string(gguf_get_val_str(ref, id)), *v.as_string()) << key;
  } else if (rt == GGUF_TYPE_ARRAY) {
    const array_value* a = v.as_array();
    ASSERT_TRUE(a && a->materialized) << key;
    auto et = gguf_get_arr_type(ref, id);
    ASSERT_EQ(static_cast<int>(et), static_cast<int>(a->element_type)) << key;
    ASSERT_EQ(gguf_get_arr_n(ref, id), a->count) << key;
    ASSERT_EQ(a->items.size(), a->count) << key;
    if (et == GGUF_TYPE_STRING) {
      for (std::size_t i = 0; i < a->count; ++i)
        if (std::string(gguf_get_arr_str(ref, id, i)) != *a->items[i].as_string()) {
          FAIL() << key << "[" << i << "] differs";
        }
    } else {
      const auto* base = static_cast<const std::byte*>(gguf_get_arr_data(ref, id));
      std::size_t sz = et == GGUF_TYPE_BOOL || et == GGUF_TYPE_UINT8 || et == GGUF_TYPE_INT8        ? 1
                       : et == GGUF_TYPE_UINT16 || et == GGUF_TYPE_INT16                            ? 2
                       : et == GGUF_TYPE_UINT32 || et == GGUF_TYPE_INT32 || et == GGUF_TYPE_FLOAT32 ? 4
                                                                                                    : 8;
      for (std::size_t i = 0; i < a->count; ++i) scalar(et, a->items[i], base + i * sz);
    }
  } else {
    scalar(rt, v, gguf_get_val_data(ref, id));
  }
}

void compare_file(const std::string& path) {
  SCOPED_TRACE(path);
  read_options all;
  all.max_array_elements = UINT64_MAX;
  auto ours = read_file(path, all);
  ASSERT_TRUE(ours.ok()) << ours.err().message;
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  gguf_context* ref = gguf_init_from_file(path.c_str(), params);
  ASSERT_NE(ref, nullptr) << "ggml could not read " << path;
  EXPECT_EQ(gguf_get_version(ref), ours->version);
  EXPECT_EQ(gguf_get_alignment(ref), ours->alignment);
  if (!ours->tensors.empty()) {
    EXPECT_EQ(gguf_get_data_offset(ref), ours->data_offset);
  }
  ASSERT_EQ(gguf_get_n_kv(ref), static_cast<int64_t>(ours->metadata.size()));
  for (int64_t i = 0; i < gguf_get_n_kv(ref); ++i) {
    ASSERT_EQ(std::string(gguf_get_key(ref, i)), ours->metadata[i].key);
    compare_value(ref, i, ours->metadata[i].val, ours->metadata[i].key);
  }
  ASSERT_EQ(gguf_get_n_tensors(ref), static_cast<int64_t>(ours->tensors.size()));
  for (int64_t i = 0; i < gguf_get_n_tensors(ref); ++i) {
    const auto& t = ours->tensors[i];
    ASSERT_EQ(std::string(gguf_get_tensor_name(ref, i)), t.name);
    EXPECT_EQ(static_cast<std::uint32_t>(gguf_get_tensor_type(ref, i)), t.type) << t.name;
    EXPECT_EQ(gguf_get_tensor_offset(ref, i), t.offset) << t.name;
    EXPECT_EQ(gguf_get_tensor_size(ref, i), t.n_bytes) << t.name;
    const int64_t* ne = gguf_get_tensor_ne(ref, i);
    for (int d = 0; d < 4; ++d) {
      std::uint64_t expect = d < static_cast<int>(t.shape.size()) ? t.shape[d] : 1;
      EXPECT_EQ(static_cast<std::uint64_t>(ne[d]), expect) << t.name << " dim " << d;
    }
  }
  gguf_free(ref);
}

TEST(gguf_differential, tiny_models_agree_with_ggml) {
  for (const char* arch : {"qwen3", "qwen3moe"}) compare_file(test::tiny_model(arch));
  for (const char* type : {"F32", "Q8_0", "Q4_0"}) compare_file(test::tiny_model("qwen3", {"--type", type}));
}

TEST(gguf_differential, every_scalar_and_array_type_agrees_with_ggml) {
  writer_input in;
  auto kv = [&](std::string k, value v) { in.metadata.push_back({std::move(k), std::move(v)}); };
  kv("general.alignment", make_u32(64));
  kv("a.u8", make_u8(1));
  kv("a.i8", make_i8(-2));
  kv("a.u16", make_u16(3));
  kv("a.i16", make_i16(-4));
  kv("a.u32", make_u32(5));
  kv("a.i32", make_i32(-6));
  kv("a.f32", make_f32(0.5f));
  kv("a.bool", make_bool(true));
  kv("a.str", make_string("seven"));
  kv("a.u64", make_u64(8));
  kv("a.i64", make_i64(-9));
  kv("a.f64", make_f64(1e300));
  kv("a.arr_str", make_string_array({"x", "", "zz"}));
  kv("a.arr_f32", make_array(value_type::float32, {make_f32(1), make_f32(-2)}));
  kv("a.arr_bool", make_array(value_type::boolean, {make_bool(false), make_bool(true)}));
  kv("a.arr_i64", make_array(value_type::int64, {make_i64(-1), make_i64(1ll << 50)}));
  kv("a.arr_u8", make_array(value_type::uint8, {}));
  std::uint32_t i = 0;
  for (const auto& t : all_types()) {
    if (t.id >= 24 && t.id <= 28) continue;  // integer types ggml does not accept as tensors in gguf
    std::string name = "t";  // appended piecewise: "t" + std::string(...) trips GCC 12's -Wrestrict
    name += std::to_string(i++);
    name += '.';
    name += t.name;
    in.tensors.push_back({name, {t.block_size * 2, 3}, t.id});
  }
  std::string dir = test::temp_dir("gguf-diff");
  std::string path = dir + "/every-type.gguf";
  ASSERT_TRUE(write_file(path, in).ok());
  compare_file(path);
}

TEST(gguf_differential, every_shape_file_agrees_with_ggml) {
  std::string dir = test::temp_dir("gguf-shapes");
  auto list = test::run({test::agifarm_cli(), "synth", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  // `synth list` prints "model quant quant ..." per line.
  std::istringstream lines(list.output);
  std::string line;
  // Every model and every mix, but not every pair: model i with the mixes j where (i + j) % 3 == 0
  // (the catalogue's ~40 models x 5 mixes took minutes on 2 cores; a mix only changes tensor types,
  // which every-type file above covers, so a third of the pairs still meets every model and mix).
  int n = 0, model_index = 0;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string model, quant;
    if (!(words >> model)) continue;
    const int i = model_index++;
    for (int j = 0; words >> quant; ++j) {
      if ((i + j) % 3 != 0) continue;
      std::string out = dir + "/" + model + "-" + quant + ".gguf";
      auto r =
          test::run({test::agifarm_cli(), "synth", "shape", "--model", model, "--quant", quant, "-o", out});
      ASSERT_EQ(r.exit_code, 0) << r.output;
      compare_file(out);
      std::filesystem::remove(out);
      ++n;
    }
  }
  EXPECT_GE(n, model_index) << "expected every model with a third of its mixes:\n" << list.output;
}

}  // namespace
}  // namespace agifarm::gguf
