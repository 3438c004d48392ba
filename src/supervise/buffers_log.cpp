#include "supervise/buffers_log.hpp"

#include <charconv>
#include <cmath>

namespace agifarm::supervise {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i) {
    char a = s[s.size() - suffix.size() + i], b = suffix[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

enum class kind { model, kv, compute, output };

struct parsed {
  std::string_view device;
  kind k;
  std::uint64_t bytes;
};

// "... <func>: <DEVICE> <kind> buffer size = <X> MiB"
bool parse_line(std::string_view line, parsed& out) {
  constexpr std::string_view marker = " buffer size =";
  auto m = line.find(marker);
  if (m == std::string_view::npos) return false;
  std::string_view value = trim(line.substr(m + marker.size()));
  double scale = 0;
  if (ends_with_ci(value, "mib"))
    scale = 1024.0 * 1024.0;
  else if (ends_with_ci(value, "kib"))
    scale = 1024.0;
  else if (ends_with_ci(value, "gib"))
    scale = 1024.0 * 1024.0 * 1024.0;
  else
    return false;
  value = trim(value.substr(0, value.size() - 3));
  double v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || p != value.data() + value.size() || !std::isfinite(v) || v < 0 || v > 1e12)
    return false;
  std::string_view head = line.substr(0, m);  // "... load_tensors: RPC0[...] model"
  auto sp = head.find_last_of(' ');
  if (sp == std::string_view::npos) return false;
  std::string_view word = head.substr(sp + 1);
  if (word == "model")
    out.k = kind::model;
  else if (word == "KV" || word == "RS")
    out.k = kind::kv;  // RS: recurrent state of hybrid models
  else if (word == "compute")
    out.k = kind::compute;
  else if (word == "output")
    out.k = kind::output;
  else
    return false;
  head = trim(head.substr(0, sp));
  auto colon = head.rfind(": ");
  std::string_view dev = trim(colon == std::string_view::npos ? head : head.substr(colon + 2));
  // the device is the last word (RPC names hold no space: "RPC0[127.0.0.1:50052]")
  if (auto s2 = dev.find_last_of(' '); s2 != std::string_view::npos) dev = dev.substr(s2 + 1);
  if (dev.empty() || dev.size() > 200) return false;
  out.device = dev;
  out.bytes = static_cast<std::uint64_t>(std::llround(v * scale));
  return true;
}

}  // namespace

bool is_host_buffer(std::string_view t) {
  return t == "CPU" || t == "host" || t.starts_with("CPU_") || ends_with_ci(t, "_host") ||
         ends_with_ci(t, "_mapped");
}

std::string_view device_key(std::string_view device) {
  auto b = device.find('[');
  return b == std::string_view::npos ? device : device.substr(0, b);
}

buffers_report parse_buffers_log(std::string_view log) {
  buffers_report r;
  device_buffers host{"host"};
  bool seen_compute = false, any_host = false;
  auto reset = [&] {
    r = {};
    host = device_buffers{"host"};
    seen_compute = any_host = false;
  };
  std::size_t pos = 0;
  while (pos < log.size()) {
    std::size_t nl = log.find('\n', pos);
    if (nl == std::string_view::npos) nl = log.size();
    std::string_view line = log.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.starts_with("[agifarm]")) {
      reset();
      continue;
    }
    parsed p;
    if (!parse_line(line, p)) continue;
    if (p.k == kind::model && seen_compute) reset();  // a new load in the same log
    device_buffers* d = nullptr;
    if (is_host_buffer(p.device)) {
      d = &host;
      any_host = true;
    } else {
      for (auto& x : r.devices)
        if (x.device == p.device) d = &x;
      if (!d) {
        if (r.devices.size() >= 256) continue;  // a log cannot name more devices than a machine has
        r.devices.push_back({std::string(p.device)});
        d = &r.devices.back();
      }
    }
    switch (p.k) {
      case kind::model:
        d->model_bytes += p.bytes;
        break;
      case kind::kv:
        d->kv_bytes += p.bytes;
        break;
      case kind::compute:
        d->compute_bytes += p.bytes;
        seen_compute = true;
        break;
      case kind::output:
        d->compute_bytes += p.bytes;
        break;
    }
    ++r.lines;
  }
  if (any_host) r.devices.push_back(host);
  r.complete = seen_compute;
  return r;
}

}  // namespace agifarm::supervise
