#include "gguf/writer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace agifarm::gguf {
namespace {

class byte_sink {
 public:
  std::vector<std::byte> out;
  template <class T>
  void put(T v) {
    auto p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<std::uint64_t>(s.size());
    auto p = reinterpret_cast<const std::byte*>(s.data());
    out.insert(out.end(), p, p + s.size());
  }
};

status put_value(byte_sink& w, const value& v, bool with_type);

status put_payload(byte_sink& w, const value& v) {
  switch (v.type) {
    case value_type::uint8:
      w.put<std::uint8_t>(static_cast<std::uint8_t>(std::get<std::uint64_t>(v.data)));
      break;
    case value_type::int8:
      w.put<std::int8_t>(static_cast<std::int8_t>(std::get<std::int64_t>(v.data)));
      break;
    case value_type::uint16:
      w.put<std::uint16_t>(static_cast<std::uint16_t>(std::get<std::uint64_t>(v.data)));
      break;
    case value_type::int16:
      w.put<std::int16_t>(static_cast<std::int16_t>(std::get<std::int64_t>(v.data)));
      break;
    case value_type::uint32:
      w.put<std::uint32_t>(static_cast<std::uint32_t>(std::get<std::uint64_t>(v.data)));
      break;
    case value_type::int32:
      w.put<std::int32_t>(static_cast<std::int32_t>(std::get<std::int64_t>(v.data)));
      break;
    case value_type::float32:
      w.put<float>(static_cast<float>(std::get<double>(v.data)));
      break;
    case value_type::uint64:
      w.put<std::uint64_t>(std::get<std::uint64_t>(v.data));
      break;
    case value_type::int64:
      w.put<std::int64_t>(std::get<std::int64_t>(v.data));
      break;
    case value_type::float64:
      w.put<double>(std::get<double>(v.data));
      break;
    case value_type::boolean:
      w.put<std::uint8_t>(std::get<bool>(v.data) ? 1 : 0);
      break;
    case value_type::string:
      w.put_string(std::get<std::string>(v.data));
      break;
    case value_type::array: {
      const auto& a = std::get<array_value>(v.data);
      if (!a.materialized && a.count != 0)
        return make_error(
            "cannot write an array whose elements were not read (raise read_options::max_array_elements)");
      w.put<std::uint32_t>(static_cast<std::uint32_t>(a.element_type));
      w.put<std::uint64_t>(a.items.size());
      for (const auto& item : a.items) {
        if (item.type != a.element_type)
          return make_error("array element type differs from the array's type");
        if (auto s = put_payload(w, item); !s) return s;
      }
      break;
    }
  }
  return {};
}

status put_value(byte_sink& w, const value& v, bool with_type) {
  if (with_type) w.put<std::uint32_t>(static_cast<std::uint32_t>(v.type));
  return put_payload(w, v);
}

value scalar(value_type t,
             std::variant<std::uint64_t, std::int64_t, double, bool, std::string, array_value> d) {
  value v;
  v.type = t;
  v.data = std::move(d);
  return v;
}

}  // namespace

result<std::uint64_t> tensor_bytes(std::uint32_t type, const std::vector<std::uint64_t>& shape) {
  const type_info* ti = find_type(type);
  if (!ti) return make_error(fmt::format("unknown ggml type id {}", type));
  if (shape.empty()) return make_error("tensor has no dimensions");
  if (shape[0] % ti->block_size) {
    return make_error(fmt::format("row of {} elements is not a multiple of {}'s block size {}", shape[0],
                                  ti->name, ti->block_size));
  }
  std::uint64_t n = shape[0] / ti->block_size * ti->type_size;
  for (std::size_t i = 1; i < shape.size(); ++i)
    if (__builtin_mul_overflow(n, shape[i], &n)) return make_error("tensor byte size overflows");
  return n;
}

result<serialized_header> serialize_header(const writer_input& in) {
  std::uint64_t alignment = 32;
  for (const auto& kv : in.metadata)
    if (kv.key == "general.alignment")
      if (auto a = kv.val.as_uint()) alignment = *a;
  if (alignment == 0 || (alignment & (alignment - 1)))
    return make_error("general.alignment must be a power of 2");
  byte_sink w;
  w.out.reserve(4096);  // headers are a few KiB to a few MiB; also spares GCC 12 a -Wstringop false positive
  w.out.insert(w.out.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
  w.put<std::uint32_t>(in.version);
  w.put<std::uint64_t>(in.tensors.size());
  w.put<std::uint64_t>(in.metadata.size());
  for (const auto& kv : in.metadata) {
    w.put_string(kv.key);
    if (auto s = put_value(w, kv.val, true); !s)
      return make_error(fmt::format("metadata '{}': {}", kv.key, s.err().message));
  }
  serialized_header h;
  for (const auto& t : in.tensors) {
    auto nb = tensor_bytes(t.type, t.shape);
    if (!nb) return make_error(fmt::format("tensor '{}': {}", t.name, nb.err().message));
    w.put_string(t.name);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(t.shape.size()));
    for (auto d : t.shape) w.put<std::uint64_t>(d);
    w.put<std::uint32_t>(t.type);
    w.put<std::uint64_t>(h.data_bytes);
    h.offsets.push_back(h.data_bytes);
    h.data_bytes += (*nb + alignment - 1) / alignment * alignment;
  }
  while (w.out.size() % alignment) w.out.push_back(std::byte{0});
  h.bytes = std::move(w.out);
  return h;
}

status write_file(const std::string& path, const writer_input& in, const tensor_filler& fill) {
  auto h = serialize_header(in);
  if (!h) return make_error(fmt::format("{}: {}", path, h.err().message));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(fmt::format("{}: cannot create: {}", path, std::strerror(errno)));
  auto write_all = [&](const std::byte* p, std::size_t n) {
    while (n) {
      ssize_t k = ::write(fd, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      p += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  };
  bool ok = write_all(h->bytes.data(), h->bytes.size());
  if (ok && fill) {
    std::vector<std::byte> buf;
    for (std::size_t i = 0; ok && i < in.tensors.size(); ++i) {
      std::uint64_t nb = *tensor_bytes(in.tensors[i].type, in.tensors[i].shape);
      std::uint64_t next = i + 1 < in.tensors.size() ? h->offsets[i + 1] : h->data_bytes;
      buf.assign(next - h->offsets[i], std::byte{0});
      fill(i, in.tensors[i], std::span<std::byte>(buf.data(), nb));
      ok = write_all(buf.data(), buf.size());
    }
  } else if (ok) {
    ok = ::ftruncate(fd, static_cast<off_t>(h->bytes.size() + h->data_bytes)) == 0;
  }
  int err = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) return make_error(fmt::format("{}: write failed: {}", path, std::strerror(err)));
  return {};
}

value make_u8(std::uint8_t v) { return scalar(value_type::uint8, std::uint64_t{v}); }
value make_i8(std::int8_t v) { return scalar(value_type::int8, std::int64_t{v}); }
value make_u16(std::uint16_t v) { return scalar(value_type::uint16, std::uint64_t{v}); }
value make_i16(std::int16_t v) { return scalar(value_type::int16, std::int64_t{v}); }
value make_u32(std::uint32_t v) { return scalar(value_type::uint32, std::uint64_t{v}); }
value make_i32(std::int32_t v) { return scalar(value_type::int32, std::int64_t{v}); }
value make_u64(std::uint64_t v) { return scalar(value_type::uint64, v); }
value make_i64(std::int64_t v) { return scalar(value_type::int64, v); }
value make_f32(float v) { return scalar(value_type::float32, double{v}); }
value make_f64(double v) { return scalar(value_type::float64, v); }
value make_bool(bool v) { return scalar(value_type::boolean, v); }
value make_string(std::string v) { return scalar(value_type::string, std::move(v)); }
value make_array(value_type element_type, std::vector<value> items) {
  array_value a;
  a.element_type = element_type;
  a.count = items.size();
  a.materialized = true;
  a.items = std::move(items);
  return scalar(value_type::array, std::move(a));
}
value make_string_array(const std::vector<std::string>& items) {
  std::vector<value> v;
  v.reserve(items.size());
  for (const auto& s : items) v.push_back(make_string(s));
  return make_array(value_type::string, std::move(v));
}

}  // namespace agifarm::gguf
