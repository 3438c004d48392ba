// GGUF header parser. Every read is bounds-checked against the bytes that remain; counts are checked
// against the smallest possible encoding of what they count before anything is reserved, so a
// hostile header can neither read out of bounds nor make us allocate more than the file's size.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "gguf/gguf.hpp"

namespace agifarm::gguf {
namespace {

constexpr std::uint32_t k_max_dims = 4;        // GGML_MAX_DIMS
constexpr std::size_t k_max_tensor_name = 63;  // GGML_MAX_NAME - 1
constexpr int k_max_array_depth = 16;
constexpr std::uint64_t k_default_alignment = 32;

// Thrown inside this file only; parse() converts it to an error value.
struct parse_failure {
  std::uint64_t offset;
  std::string what;
};

class cursor {
 public:
  cursor(std::span<const std::byte> bytes) : bytes_(bytes) {}
  std::uint64_t pos() const { return pos_; }
  std::uint64_t remaining() const { return bytes_.size() - pos_; }
  [[noreturn]] void fail(std::uint64_t at, std::string what) const {
    throw parse_failure{at, std::move(what)};
  }

  void need(std::uint64_t n, const char* what) const {
    if (n > remaining())
      fail(pos_, fmt::format("truncated: {} needs {} bytes but only {} remain", what, n, remaining()));
  }
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  void skip(std::uint64_t n, const char* what) {
    need(n, what);
    pos_ += n;
  }
  std::string read_string(const char* what) {
    std::uint64_t at = pos_;
    auto len = read<std::uint64_t>(what);
    if (len > remaining())
      fail(at, fmt::format("{} has length {} but only {} bytes remain in the file", what, len, remaining()));
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }
  void skip_string(const char* what) {
    std::uint64_t at = pos_;
    auto len = read<std::uint64_t>(what);
    if (len > remaining())
      fail(at, fmt::format("{} has length {} but only {} bytes remain in the file", what, len, remaining()));
    pos_ += len;
  }

 private:
  std::span<const std::byte> bytes_;
  std::uint64_t pos_ = 0;
};

// Fixed encoded size of a scalar type; 0 for string/array.
std::uint64_t scalar_size(value_type t) {
  switch (t) {
    case value_type::uint8:
    case value_type::int8:
    case value_type::boolean:
      return 1;
    case value_type::uint16:
    case value_type::int16:
      return 2;
    case value_type::uint32:
    case value_type::int32:
    case value_type::float32:
      return 4;
    case value_type::uint64:
    case value_type::int64:
    case value_type::float64:
      return 8;
    default:
      return 0;
  }
}

// Smallest encoding of one element: used to bound counts before reserving.
std::uint64_t min_encoded_size(value_type t) {
  if (t == value_type::string) return 8;
  if (t == value_type::array) return 12;
  return scalar_size(t);
}

value_type read_value_type(cursor& c, const std::string& key) {
  std::uint64_t at = c.pos();
  auto raw = c.read<std::uint32_t>("value type");
  if (raw > static_cast<std::uint32_t>(value_type::float64))
    c.fail(at, fmt::format("key '{}' has unknown value type {}", key, raw));
  return static_cast<value_type>(raw);
}

value read_value(cursor& c, value_type t, const std::string& key, const read_options& opt, int depth,
                 bool keep);

array_value read_array(cursor& c, const std::string& key, const read_options& opt, int depth, bool keep) {
  if (depth > k_max_array_depth)
    c.fail(c.pos(), fmt::format("key '{}': arrays nested deeper than {}", key, k_max_array_depth));
  array_value a;
  a.element_type = read_value_type(c, key);
  std::uint64_t at = c.pos();
  a.count = c.read<std::uint64_t>("array length");
  a.file_offset = c.pos();
  std::uint64_t min = min_encoded_size(a.element_type);
  if (a.count > c.remaining() / min)
    c.fail(at, fmt::format("key '{}': array of {} {} elements cannot fit in the {} bytes that remain", key,
                           a.count, to_string(a.element_type), c.remaining()));
  a.materialized = keep && a.count <= opt.max_array_elements;
  if (a.materialized) a.items.reserve(a.count);
  std::uint64_t fixed = scalar_size(a.element_type);
  if (!a.materialized && fixed) {
    c.skip(a.count * fixed, "array elements");
    return a;
  }
  for (std::uint64_t i = 0; i < a.count; ++i) {
    if (!a.materialized && a.element_type == value_type::string) {
      c.skip_string("array string");
      continue;
    }
    value v = read_value(c, a.element_type, key, opt, depth + 1, a.materialized);
    if (a.materialized) a.items.push_back(std::move(v));
  }
  return a;
}

value read_value(cursor& c, value_type t, const std::string& key, const read_options& opt, int depth,
                 bool keep) {
  value v;
  v.type = t;
  switch (t) {
    case value_type::uint8:
      v.data = std::uint64_t{c.read<std::uint8_t>("u8 value")};
      break;
    case value_type::int8:
      v.data = std::int64_t{c.read<std::int8_t>("i8 value")};
      break;
    case value_type::uint16:
      v.data = std::uint64_t{c.read<std::uint16_t>("u16 value")};
      break;
    case value_type::int16:
      v.data = std::int64_t{c.read<std::int16_t>("i16 value")};
      break;
    case value_type::uint32:
      v.data = std::uint64_t{c.read<std::uint32_t>("u32 value")};
      break;
    case value_type::int32:
      v.data = std::int64_t{c.read<std::int32_t>("i32 value")};
      break;
    case value_type::float32:
      v.data = double{c.read<float>("f32 value")};
      break;
    case value_type::uint64:
      v.data = c.read<std::uint64_t>("u64 value");
      break;
    case value_type::int64:
      v.data = c.read<std::int64_t>("i64 value");
      break;
    case value_type::float64:
      v.data = c.read<double>("f64 value");
      break;
    case value_type::boolean: {
      std::uint64_t at = c.pos();
      auto b = c.read<std::uint8_t>("bool value");
      if (b > 1) c.fail(at, fmt::format("key '{}': bool value {} is neither 0 nor 1", key, b));
      v.data = b != 0;
      break;
    }
    case value_type::string:
      if (keep)
        v.data = c.read_string("string value");
      else
        c.skip_string("string value");
      break;
    case value_type::array:
      v.data = read_array(c, key, opt, depth, keep);
      break;
  }
  return v;
}

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

}  // namespace

std::optional<double> value::as_number() const {
  if (auto* u = std::get_if<std::uint64_t>(&data)) return static_cast<double>(*u);
  if (auto* i = std::get_if<std::int64_t>(&data)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(&data)) return *d;
  if (auto* b = std::get_if<bool>(&data)) return *b ? 1.0 : 0.0;
  return std::nullopt;
}

std::optional<std::uint64_t> value::as_uint() const {
  if (auto* u = std::get_if<std::uint64_t>(&data)) return *u;
  if (auto* i = std::get_if<std::int64_t>(&data); i && *i >= 0) return static_cast<std::uint64_t>(*i);
  return std::nullopt;
}

std::uint64_t tensor_info::n_elements() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const value* file::find(std::string_view key) const {
  for (const auto& kv : metadata)
    if (kv.key == key) return &kv.val;
  return nullptr;
}
std::optional<std::string> file::get_string(std::string_view key) const {
  auto* v = find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return *v->as_string();
}
std::optional<std::uint64_t> file::get_uint(std::string_view key) const {
  auto* v = find(key);
  return v ? v->as_uint() : std::nullopt;
}
std::optional<double> file::get_number(std::string_view key) const {
  auto* v = find(key);
  return v ? v->as_number() : std::nullopt;
}
std::string file::architecture() const { return get_string("general.architecture").value_or(""); }
std::optional<std::uint64_t> file::arch_uint(std::string_view suffix) const {
  return get_uint(fmt::format("{}.{}", architecture(), suffix));
}

result<file> parse(std::span<const std::byte> bytes, std::string_view name, const read_options& opt) {
  file f;
  f.path = std::string(name);
  f.file_size = bytes.size();
  cursor c(bytes);
  try {
    c.need(4, "magic");
    if (std::memcmp(bytes.data(), "GGUF", 4) != 0) {
      std::string got;
      for (int i = 0; i < 4; ++i) {
        auto ch = static_cast<unsigned char>(bytes[i]);
        got += std::isprint(ch) ? static_cast<char>(ch) : '?';
      }
      c.fail(0, fmt::format("wrong magic '{}' (expected 'GGUF'): not a GGUF file", got));
    }
    c.skip(4, "magic");
    f.version = c.read<std::uint32_t>("version");
    if (f.version == 1) c.fail(4, "GGUF version 1 is not supported (only 2 and 3)");
    if (f.version != 2 && f.version != 3)
      c.fail(4, fmt::format("unsupported GGUF version {} (only 2 and 3){}", f.version,
                            (f.version & 0xFFFF) == 0 ? "; the file may be big-endian" : ""));
    std::uint64_t at = c.pos();
    auto n_tensors = c.read<std::uint64_t>("tensor count");
    auto n_kv = c.read<std::uint64_t>("metadata count");
    // A tensor info takes at least 24 bytes, a key/value at least 13.
    if (n_tensors > c.remaining() / 24)
      c.fail(at,
             fmt::format("tensor count {} cannot fit in the {} bytes that remain", n_tensors, c.remaining()));
    if (n_kv > c.remaining() / 13)
      c.fail(at + 8,
             fmt::format("metadata count {} cannot fit in the {} bytes that remain", n_kv, c.remaining()));

    std::unordered_set<std::string> keys;
    f.metadata.reserve(n_kv);
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      std::uint64_t kv_at = c.pos();
      key_value kv;
      kv.key = c.read_string("metadata key");
      if (kv.key.empty()) c.fail(kv_at, fmt::format("metadata key #{} is empty", i));
      if (!keys.insert(kv.key).second) c.fail(kv_at, fmt::format("duplicate metadata key '{}'", kv.key));
      value_type t = read_value_type(c, kv.key);
      kv.val = read_value(c, t, kv.key, opt, 0, true);
      if (kv.key == "general.alignment") {
        if (t != value_type::uint32)
          c.fail(kv_at, fmt::format("general.alignment must be u32 but is {}", to_string(t)));
        auto a = std::get<std::uint64_t>(kv.val.data);
        if (a == 0 || (a & (a - 1)) != 0)
          c.fail(kv_at, fmt::format("general.alignment {} is not a power of 2", a));
        f.alignment = a;
      }
      f.metadata.push_back(std::move(kv));
    }
    if (!f.find("general.alignment")) f.alignment = k_default_alignment;

    std::unordered_set<std::string> names;
    f.tensors.reserve(n_tensors);
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      std::uint64_t t_at = c.pos();
      tensor_info t;
      t.name = c.read_string("tensor name");
      if (t.name.size() > k_max_tensor_name)
        c.fail(t_at, fmt::format("tensor name '{}' is longer than {} bytes", t.name.substr(0, 80),
                                 k_max_tensor_name));
      if (!names.insert(t.name).second) c.fail(t_at, fmt::format("duplicate tensor name '{}'", t.name));
      std::uint64_t dims_at = c.pos();
      auto n_dims = c.read<std::uint32_t>("tensor dimension count");
      if (n_dims == 0 || n_dims > k_max_dims)
        c.fail(dims_at,
               fmt::format("tensor '{}' has {} dimensions (1..{} allowed)", t.name, n_dims, k_max_dims));
      std::uint64_t n_el = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        std::uint64_t ne_at = c.pos();
        auto ne = c.read<std::uint64_t>("tensor dimension");
        if (ne > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
            mul_overflows(n_el, ne, n_el) ||
            n_el > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          c.fail(ne_at, fmt::format("tensor '{}' element count overflows", t.name));
        t.shape.push_back(ne);
      }
      std::uint64_t type_at = c.pos();
      t.type = c.read<std::uint32_t>("tensor type");
      const type_info* ti = find_type(t.type);
      if (!ti) c.fail(type_at, fmt::format("tensor '{}' has unknown ggml type id {}", t.name, t.type));
      if (t.shape[0] % ti->block_size != 0)
        c.fail(type_at, fmt::format("tensor '{}': row of {} elements is not a multiple of {}'s block size {}",
                                    t.name, t.shape[0], ti->name, ti->block_size));
      std::uint64_t bytes_n = t.shape[0] / ti->block_size * ti->type_size;
      for (std::size_t d = 1; d < t.shape.size(); ++d)
        if (mul_overflows(bytes_n, t.shape[d], bytes_n))
          c.fail(type_at, fmt::format("tensor '{}' byte size overflows", t.name));
      t.n_bytes = bytes_n;
      std::uint64_t off_at = c.pos();
      t.offset = c.read<std::uint64_t>("tensor offset");
      if (t.offset % f.alignment != 0)
        c.fail(off_at, fmt::format("tensor '{}' offset {} is not a multiple of the alignment {}", t.name,
                                   t.offset, f.alignment));
      f.tensors.push_back(std::move(t));
      (void)t_at;
    }
    std::uint64_t header_end = c.pos();
    f.data_offset = (header_end + f.alignment - 1) / f.alignment * f.alignment;
    if (n_tensors > 0 && f.data_offset > f.file_size)
      c.fail(header_end, fmt::format("data section would start at {} past the end of the file ({} bytes)",
                                     f.data_offset, f.file_size));
    if (opt.check_data_extent) {
      for (const auto& t : f.tensors) {
        std::uint64_t end;
        if (__builtin_add_overflow(f.data_offset, t.offset, &end) ||
            __builtin_add_overflow(end, t.n_bytes, &end) || end > f.file_size)
          c.fail(f.data_offset + t.offset,
                 fmt::format(
                     "tensor '{}' ({} bytes at data offset {}) extends past the end of the file ({} bytes)",
                     t.name, t.n_bytes, t.offset, f.file_size));
      }
    }
  } catch (const parse_failure& e) {
    return make_error(fmt::format("{}: at byte {}: {}", name, e.offset, e.what), 2);
  } catch (const std::bad_alloc&) {
    return make_error(fmt::format("{}: out of memory while reading the header", name), 2);
  }
  return f;
}

result<file> read_file(const std::string& path, const read_options& opt) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)), 2);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(fmt::format("{}: not a regular file", path), 2);
  }
  std::size_t size = static_cast<std::size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return make_error(fmt::format("{}: at byte 0: truncated: the file is empty", path), 2);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return make_error(fmt::format("{}: cannot map: {}", path, std::strerror(errno)), 2);
  auto r = parse(std::span<const std::byte>(static_cast<const std::byte*>(map), size), path, opt);
  ::munmap(map, size);
  return r;
}

}  // namespace agifarm::gguf
