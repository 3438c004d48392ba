// The ggml type table. Block sizes and bytes per block were printed by ggml itself
// (ggml_blck_size / ggml_type_size of the llama.cpp this project builds), so they match the reference.
#include <algorithm>
#include <cctype>

#include "gguf/gguf.hpp"

namespace agifarm::gguf {

const std::vector<type_info>& all_types() {
  static const std::vector<type_info> k_types = {
      {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
      {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
      {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
      {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
      {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
      {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
      {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
      {40, "NVFP4", 64, 36},    {41, "Q1_0", 128, 18},    {42, "Q2_0", 64, 18},
  };
  return k_types;
}

const type_info* find_type(std::uint32_t id) {
  for (const auto& t : all_types())
    if (t.id == id) return &t;
  return nullptr;
}

const type_info* find_type(std::string_view name) {
  auto eq = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::toupper(static_cast<unsigned char>(x)) ==
                    std::toupper(static_cast<unsigned char>(y));
           });
  };
  for (const auto& t : all_types())
    if (eq(t.name, name)) return &t;
  return nullptr;
}

std::string_view to_string(value_type t) {
  switch (t) {
    case value_type::uint8:
      return "u8";
    case value_type::int8:
      return "i8";
    case value_type::uint16:
      return "u16";
    case value_type::int16:
      return "i16";
    case value_type::uint32:
      return "u32";
    case value_type::int32:
      return "i32";
    case value_type::float32:
      return "f32";
    case value_type::boolean:
      return "bool";
    case value_type::string:
      return "str";
    case value_type::array:
      return "arr";
    case value_type::uint64:
      return "u64";
    case value_type::int64:
      return "i64";
    case value_type::float64:
      return "f64";
  }
  return "?";
}

}  // namespace agifarm::gguf
