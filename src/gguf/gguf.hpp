// gguf: reads the header of GGUF model files (v2 and v3) — metadata and tensor infos — never the
// tensor data, and summarizes what a model is (inspect). See docs/gguf.md for the byte layout.
//
// Contract: parse() takes the bytes of a whole file (read_file() maps the file, so only the header
// pages are ever touched) and checks every count, length and offset against what remains before it
// allocates; bad input returns an error naming the file and the byte offset (exit code 2), never a
// crash or a huge allocation. Values are plain data; functions are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.hpp"

namespace agifarm::gguf {

// Metadata value types, numbered as in the file.
enum class value_type : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};
std::string_view to_string(value_type t);

struct value;
// An array keeps its element type and count always; its elements only when materialized (see
// read_options::max_array_elements), so 151k tokenizer strings are skipped, not copied, by default.
struct array_value {
  value_type element_type = value_type::uint8;
  std::uint64_t count = 0;
  std::uint64_t file_offset = 0;  // where the first element starts
  bool materialized = false;
  std::vector<value> items;
};
struct value {
  value_type type = value_type::uint8;
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, array_value> data;
  // Numeric view of any integer, float or bool (nullopt for strings and arrays).
  std::optional<double> as_number() const;
  std::optional<std::uint64_t> as_uint() const;
  const std::string* as_string() const { return std::get_if<std::string>(&data); }
  const array_value* as_array() const { return std::get_if<array_value>(&data); }
};

struct key_value {
  std::string key;
  value val;
};

// ggml tensor types and their block layout, as ggml.c's type_traits (ids are stable file values).
struct type_info {
  std::uint32_t id;
  std::string_view name;     // "Q4_K", "F16", ...
  std::uint32_t block_size;  // elements per block
  std::uint32_t type_size;   // bytes per block
};
const type_info* find_type(std::uint32_t id);       // nullptr for ids ggml does not know
const type_info* find_type(std::string_view name);  // case-insensitive
const std::vector<type_info>& all_types();

struct tensor_info {
  std::string name;
  std::vector<std::uint64_t> shape;  // ne[0..n_dims)
  std::uint32_t type = 0;
  std::uint64_t offset = 0;  // relative to the start of the data section
  std::uint64_t n_bytes = 0;
  std::uint64_t n_elements() const;
};

struct file {
  std::string path;
  std::uint32_t version = 3;
  std::uint64_t alignment = 32;
  std::uint64_t data_offset = 0;  // absolute offset of the tensor data section
  std::uint64_t file_size = 0;
  std::vector<key_value> metadata;
  std::vector<tensor_info> tensors;

  const value* find(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<std::uint64_t> get_uint(std::string_view key) const;
  std::optional<double> get_number(std::string_view key) const;
  std::string architecture() const;  // general.architecture or ""
  // `<arch>.<suffix>` for the file's architecture, e.g. arch_uint("block_count").
  std::optional<std::uint64_t> arch_uint(std::string_view suffix) const;
};

struct read_options {
  std::uint64_t max_array_elements = 4096;  // arrays longer than this are skipped, not materialized
  bool check_data_extent = true;            // tensors must lie inside the file
};

// Parses a whole GGUF file image. `name` is used in error messages only.
result<file> parse(std::span<const std::byte> bytes, std::string_view name, const read_options& opt = {});
// Maps `path` read-only and parses it.
result<file> read_file(const std::string& path, const read_options& opt = {});

// Tensor classes for inspect and the planner.
enum class tensor_class {
  token_embd,
  attention,
  ffn_dense,
  ffn_expert,
  ffn_shared_expert,
  norm,
  output,
  other
};
std::string_view to_string(tensor_class c);
tensor_class classify(std::string_view tensor_name);
// Block index of "blk.N.…" names, or nullopt.
std::optional<int> block_index(std::string_view tensor_name);

// A model is one file or all parts of a split model (name-00001-of-0000N.gguf + split.* keys).
struct model {
  std::vector<file> parts;  // parts[0] holds the metadata
  const file& head() const { return parts.front(); }
  std::uint64_t file_bytes() const;
  std::vector<const tensor_info*> tensors() const;
};
// Reads a model from its (first) file; other split parts are found next to it and must all exist.
result<model> read_model(const std::string& path, const read_options& opt = {});

struct summary {
  std::string file;
  std::string architecture;
  std::string name;  // general.name
  std::uint64_t n_layers = 0, n_embd = 0, n_head = 0, n_head_kv = 0, key_length = 0, value_length = 0;
  std::uint64_t context_length = 0, n_vocab = 0, n_experts = 0, n_experts_used = 0, n_ff = 0, n_ff_exp = 0;
  std::uint64_t n_params = 0, file_bytes = 0, n_tensors = 0, n_split = 1;
  std::uint32_t version = 0;
  std::map<std::string, std::uint64_t> tensor_bytes_by_class;  // every class present, even if 0
  std::map<std::string, std::uint64_t> bytes_by_type;
};
summary summarize(const model& m);

}  // namespace agifarm::gguf
