// GGUF writer: builds a file from metadata and tensor definitions. Offsets are computed here (each
// tensor padded to the alignment, as ggml lays them out), so callers only say names, shapes, types.
// Without a filler the data section is left as a hole (ftruncate): a "shape" file of a 130 GB
// model takes a few MB on disk and every byte of its header is exact. Thread-safe (no shared state).
#pragma once

#include <functional>
#include <span>

#include "gguf/gguf.hpp"

namespace agifarm::gguf {

struct tensor_def {
  std::string name;
  std::vector<std::uint64_t> shape;
  std::uint32_t type = 0;  // ggml type id
};

struct writer_input {
  std::uint32_t version = 3;
  std::vector<key_value> metadata;  // general.alignment, if present, sets the alignment (u32)
  std::vector<tensor_def> tensors;
};

// Fills one tensor's bytes (already sized to the tensor) when writing real data.
using tensor_filler = std::function<void(std::size_t index, const tensor_def& def, std::span<std::byte> out)>;

// Byte size of a tensor of `type` and `shape`; an error if the type is unknown or the row does not
// divide into blocks.
result<std::uint64_t> tensor_bytes(std::uint32_t type, const std::vector<std::uint64_t>& shape);

// The header bytes (up to and including padding to the data section) and the data section size.
struct serialized_header {
  std::vector<std::byte> bytes;
  std::uint64_t data_bytes = 0;
  std::vector<std::uint64_t> offsets;  // per tensor, relative to the data section
};
result<serialized_header> serialize_header(const writer_input& in);

// Writes `path` (replacing it). No filler: sparse data section.
status write_file(const std::string& path, const writer_input& in, const tensor_filler& fill = {});

// Value builders.
value make_u8(std::uint8_t v);
value make_i8(std::int8_t v);
value make_u16(std::uint16_t v);
value make_i16(std::int16_t v);
value make_u32(std::uint32_t v);
value make_i32(std::int32_t v);
value make_u64(std::uint64_t v);
value make_i64(std::int64_t v);
value make_f32(float v);
value make_f64(double v);
value make_bool(bool v);
value make_string(std::string v);
value make_array(value_type element_type, std::vector<value> items);
value make_string_array(const std::vector<std::string>& items);

}  // namespace agifarm::gguf
