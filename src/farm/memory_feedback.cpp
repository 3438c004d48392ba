#include "farm/memory_feedback.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "farm/state.hpp"
#include "plan/deployment.hpp"
#include "supervise/buffers_log.hpp"

namespace agifarm::farm {
namespace json = boost::json;
namespace fs = std::filesystem;

std::string device_kind(std::string_view d) {
  d = supervise::device_key(d);  // drop "[host:port]"
  while (!d.empty() && std::isdigit(static_cast<unsigned char>(d.back()))) d.remove_suffix(1);
  return d.empty() ? std::string("unknown") : std::string(d);
}

namespace {

result<std::string> get_string(const json::object& o, const char* key, const std::string& at, bool required) {
  const auto* v = o.if_contains(key);
  if (!v) {
    if (required) return make_error(fmt::format("{}.{}: missing", at, key), 2);
    return std::string();
  }
  if (!v->is_string()) return make_error(fmt::format("{}.{}: expected a string", at, key), 2);
  return std::string(v->as_string());
}

result<std::int64_t> get_int(const json::object& o, const char* key, const std::string& at,
                             bool non_negative) {
  const auto* v = o.if_contains(key);
  if (!v) return make_error(fmt::format("{}.{}: missing", at, key), 2);
  std::int64_t n = 0;
  if (v->is_int64())
    n = v->as_int64();
  else if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    n = static_cast<std::int64_t>(v->as_uint64());
  else
    return make_error(fmt::format("{}.{}: expected an integer", at, key), 2);
  if (non_negative && n < 0) return make_error(fmt::format("{}.{}: {} is negative", at, key, n), 2);
  return n;
}

bool same_key(const memory_observation& a, const memory_observation& b) {
  return a.model == b.model && a.model_file == b.model_file && a.device_kind == b.device_kind;
}

bool belongs_to(const memory_observation& o, const model_ref& m) {
  if (!o.model_file.empty() && !m.file.empty()) return o.model_file == m.file;
  return o.model == m.name;
}

std::string mib(double bytes) { return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0)); }

}  // namespace

result<memory_feedback> parse_memory_feedback(std::string_view text, const std::string& where) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec) return make_error(fmt::format("{}: not JSON: {}", where, ec.message()), 2);
  if (!v.is_object()) return make_error(fmt::format("{}: expected an object", where), 2);
  const auto& top = v.as_object();
  auto ver = get_int(top, "version", where, true);
  if (!ver) return ver.err();
  if (*ver != 1) return make_error(fmt::format("{}.version: {} is not supported (1 is)", where, *ver), 2);
  const auto* obs = top.if_contains("observations");
  if (!obs || !obs->is_array())
    return make_error(fmt::format("{}.observations: expected an array", where), 2);
  memory_feedback out;
  const auto& arr = obs->as_array();
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const std::string at = fmt::format("{}: observations[{}]", where, i);
    if (!arr[i].is_object()) return make_error(at + ": expected an object", 2);
    const auto& o = arr[i].as_object();
    memory_observation m;
    auto model = get_string(o, "model", at, true);
    if (!model) return model.err();
    if (model->empty()) return make_error(at + ".model: empty", 2);
    auto kind = get_string(o, "device_kind", at, true);
    if (!kind) return kind.err();
    if (kind->empty()) return make_error(at + ".device_kind: empty", 2);
    auto file = get_string(o, "model_file", at, false);
    if (!file) return file.err();
    auto dev = get_string(o, "device", at, false);
    if (!dev) return dev.err();
    auto be = get_string(o, "backend", at, false);
    if (!be) return be.err();
    auto pred = get_int(o, "predicted_bytes", at, true);
    if (!pred) return pred.err();
    auto meas = get_int(o, "measured_bytes", at, true);
    if (!meas) return meas.err();
    auto wall = get_int(o, "wall", at, true);
    if (!wall) return wall.err();
    m.model = std::move(*model);
    m.device_kind = std::move(*kind);
    m.model_file = std::move(*file);
    m.device = std::move(*dev);
    m.backend = std::move(*be);
    m.predicted_bytes = static_cast<std::uint64_t>(*pred);
    m.measured_bytes = static_cast<std::uint64_t>(*meas);
    m.wall = *wall;
    note(out, std::move(m));  // duplicates in a hand-edited file: the later one stands
  }
  return out;
}

std::string to_json_text(const memory_feedback& f) {
  json::array obs;
  for (const auto& o : f.observations)
    obs.push_back(json::object{{"model", o.model},
                               {"model_file", o.model_file},
                               {"device_kind", o.device_kind},
                               {"device", o.device},
                               {"backend", o.backend},
                               {"predicted_bytes", static_cast<std::int64_t>(o.predicted_bytes)},
                               {"measured_bytes", static_cast<std::int64_t>(o.measured_bytes)},
                               {"wall", o.wall}});
  return json::serialize(json::object{{"version", 1}, {"observations", std::move(obs)}}) + "\n";
}

void note(memory_feedback& f, memory_observation o) {
  for (auto& e : f.observations)
    if (same_key(e, o)) {
      e = std::move(o);
      return;
    }
  f.observations.push_back(std::move(o));
}

std::vector<memory_observation> observations_of(const std::string& model, const std::string& model_file,
                                                const std::string& backend,
                                                const std::vector<device_memory_record>& predicted,
                                                const std::vector<device_memory_record>& measured,
                                                std::int64_t wall) {
  std::vector<memory_observation> out;
  std::vector<bool> used(measured.size(), false);
  for (const auto& p : predicted)
    for (std::size_t i = 0; i < measured.size(); ++i) {
      if (used[i] || supervise::device_key(measured[i].device) != supervise::device_key(p.device)) continue;
      used[i] = true;
      memory_observation o{model,   model_file, device_kind(p.device), measured[i].device,
                           backend, p.total(),  measured[i].total(),   wall};
      auto it =
          std::find_if(out.begin(), out.end(), [&](const auto& e) { return e.device_kind == o.device_kind; });
      if (it == out.end())
        out.push_back(std::move(o));
      else if (o.diff_bytes() > it->diff_bytes())
        *it = std::move(o);  // the shortest prediction of the kind
      break;
    }
  return out;
}

std::vector<kind_margin> margins_from(const memory_feedback& f, const std::vector<model_ref>& models,
                                      std::uint64_t default_host_reserve, const margin_rule& rule) {
  std::vector<kind_margin> out;
  for (const auto& o : f.observations) {
    if (std::none_of(models.begin(), models.end(), [&](const model_ref& m) { return belongs_to(o, m); }))
      continue;
    auto it =
        std::find_if(out.begin(), out.end(), [&](const auto& k) { return k.device_kind == o.device_kind; });
    if (it == out.end()) {
      out.push_back({o.device_kind, 0, 0, {}});
      it = out.end() - 1;
    }
    const auto add = static_cast<std::uint64_t>(std::max<std::int64_t>(0, o.diff_bytes()));
    it->shortfall_bytes =
        add > UINT64_MAX - it->shortfall_bytes ? UINT64_MAX : it->shortfall_bytes + add;  // saturates
    it->used.push_back(o);
  }
  for (auto& k : out) {
    const std::uint64_t shortfall = std::min(k.shortfall_bytes, rule.cap_bytes);  // no overflow below
    if (k.device_kind == "host")
      k.margin_bytes = default_host_reserve + shortfall;
    else
      k.margin_bytes = std::min(rule.cap_bytes, std::max(rule.floor_bytes, shortfall + rule.safety_bytes));
  }
  return out;
}

std::string describe(const memory_observation& o) {
  const double d = static_cast<double>(o.diff_bytes());
  return fmt::format("model {} on {} measured {}{} vs predicted ({} -> {})", o.model, o.device_kind,
                     d >= 0 ? "+" : "-", mib(std::abs(d)), mib(static_cast<double>(o.predicted_bytes)),
                     mib(static_cast<double>(o.measured_bytes)));
}

std::string memory_feedback_file(const std::string& state_dir) { return state_dir + "/measured-memory.json"; }

result<memory_feedback> load_memory_feedback(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return memory_feedback{};
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("cannot read {}", path), 2);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_memory_feedback(text, path);
}

status save_memory_feedback(const std::string& path, const memory_feedback& f) {
  const std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << to_json_text(f);
    out.flush();
    if (!out) return make_error(fmt::format("cannot write {}", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return make_error(fmt::format("cannot write {}: {}", path, ec.message()));
  }
  return status::success();
}

std::vector<std::string> remember_measured_memory(const std::string& path, const plan::deployment& d,
                                                  const std::vector<backend_record>& records) {
  // Once per process start: state writes are frequent, a backend's load happens once.
  static std::mutex mu;
  static std::set<std::pair<std::string, std::int64_t>> done;
  std::vector<memory_observation> fresh;
  {
    std::lock_guard lk(mu);
    for (const auto& r : records) {
      if (r.kind != "llama-server" || r.measured_devices.empty() || r.predicted_devices.empty()) continue;
      if (!done.insert({path + "\n" + r.name, r.started_wall}).second) continue;
      std::string file;
      for (const auto& b : d.backends)
        if (b.name == r.name) file = b.model_file;
      if (!file.empty() && (r.node.empty() || r.node == "local")) {
        std::error_code ec;
        auto abs = fs::weakly_canonical(file, ec);
        if (!ec) file = abs.string();
      }
      auto obs =
          observations_of(r.model, file, r.name, r.predicted_devices, r.measured_devices, r.started_wall);
      fresh.insert(fresh.end(), obs.begin(), obs.end());
    }
  }
  std::vector<std::string> lines;
  if (fresh.empty()) return lines;
  auto f = load_memory_feedback(path);
  memory_feedback fb;
  if (f)
    fb = std::move(*f);
  else
    lines.push_back(fmt::format("agifarm: {} (starting it afresh)", f.err().message));
  for (auto& o : fresh) {
    lines.push_back(fmt::format("agifarm: {}: {} (kept in {})", o.backend, describe(o), path));
    note(fb, std::move(o));
  }
  if (auto st = save_memory_feedback(path, fb); !st) lines.push_back("agifarm: " + st.err().message);
  return lines;
}

}  // namespace agifarm::farm
