#include "farm/state.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace agifarm::farm {
namespace json = boost::json;

namespace {
json::array devices_json(const std::vector<device_memory_record>& ds) {
  json::array a;
  for (const auto& d : ds)
    a.push_back(json::object{{"device", d.device},
                             {"model_bytes", d.model_bytes},
                             {"kv_bytes", d.kv_bytes},
                             {"compute_bytes", d.compute_bytes},
                             {"total_bytes", d.total()}});
  return a;
}
}  // namespace

json::object to_json(const farm_state& s) {
  json::array backends;
  for (const auto& b : s.backends) {
    backends.push_back(json::object{{"name", b.name},
                                    {"kind", b.kind},
                                    {"model", b.model},
                                    {"host", b.host},
                                    {"port", b.port},
                                    {"pid", b.pid},
                                    {"state", b.state},
                                    {"restarts", b.restarts},
                                    {"reason", b.reason},
                                    {"last_exit", b.last_exit},
                                    {"started_wall", b.started_wall},
                                    {"log_path", b.log_path},
                                    {"program", b.program},
                                    {"slots", b.slots},
                                    {"predicted_bytes", b.predicted_bytes},
                                    {"node", b.node},
                                    {"rss_bytes", b.rss_bytes}});
    if (!b.predicted_devices.empty())
      backends.back().as_object()["predicted_devices"] = devices_json(b.predicted_devices);
    if (!b.measured_devices.empty())
      backends.back().as_object()["measured_devices"] = devices_json(b.measured_devices);
  }
  json::array pools;
  for (const auto& p : s.pools)
    pools.push_back(json::object{{"name", p.name},
                                 {"aliases", json::array(p.aliases.begin(), p.aliases.end())},
                                 {"backends", json::array(p.backends.begin(), p.backends.end())}});
  json::array nodes;
  for (const auto& n : s.nodes)
    nodes.push_back(json::object{{"name", n.name},
                                 {"ssh", n.ssh},
                                 {"address", n.address},
                                 {"agifarm", n.agifarm},
                                 {"llama_bin", n.llama_bin},
                                 {"state_dir", n.state_dir},
                                 {"state", n.state},
                                 {"since_wall", n.since_wall},
                                 {"error", n.error},
                                 {"restarts", n.restarts},
                                 {"agifarm_version", n.agifarm_version},
                                 {"llama_version", n.llama_version}});
  json::object o{{"supervisor_pid", s.supervisor_pid},
                 {"started_wall", s.started_wall},
                 {"phase", s.phase},
                 {"endpoint", s.endpoint},
                 {"strategy", s.strategy},
                 {"source", s.source},
                 {"backends", backends},
                 {"pools", pools}};
  if (!s.models.empty()) {
    json::array ms;
    for (const auto& m : s.models)
      ms.push_back(json::object{{"name", m.name},
                                {"state", m.state},
                                {"on_demand", m.on_demand},
                                {"pinned", m.pinned},
                                {"loads", m.loads},
                                {"evictions", m.evictions},
                                {"unloads", m.unloads},
                                {"last_load_s", m.last_load_s},
                                {"total_load_s", m.total_load_s},
                                {"reason", m.reason},
                                {"saved_tokens", m.saved_tokens},
                                {"restored_tokens", m.restored_tokens}});
    o["models"] = std::move(ms);
  }
  if (!s.nodes.empty()) {
    o["nodes"] = std::move(nodes);
    o["ssh_options"] = json::array(s.ssh_options.begin(), s.ssh_options.end());
  }
  return o;
}

namespace {
struct field_error {
  std::string what;
};
const json::value& need(const json::object& o, const char* k, const std::string& path) {
  auto* v = o.if_contains(k);
  if (!v) throw field_error{path + "." + k + ": missing"};
  return *v;
}
std::string str(const json::object& o, const char* k, const std::string& path) {
  auto& v = need(o, k, path);
  if (!v.is_string()) throw field_error{path + "." + k + ": expected a string"};
  return std::string(v.as_string());
}
std::int64_t num(const json::object& o, const char* k, const std::string& path) {
  auto& v = need(o, k, path);
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64()) return static_cast<std::int64_t>(v.as_uint64());
  throw field_error{path + "." + k + ": expected an integer"};
}
std::vector<std::string> strs(const json::object& o, const char* k, const std::string& path) {
  auto& v = need(o, k, path);
  if (!v.is_array()) throw field_error{path + "." + k + ": expected an array"};
  std::vector<std::string> out;
  for (auto& x : v.as_array()) {
    if (!x.is_string()) throw field_error{path + "." + k + ": expected strings"};
    out.emplace_back(x.as_string());
  }
  return out;
}
const json::object& obj(const json::value& v, const std::string& path) {
  if (!v.is_object()) throw field_error{path + ": expected an object"};
  return v.as_object();
}
std::vector<device_memory_record> devices_from(const json::object& o, const char* k,
                                               const std::string& path) {
  std::vector<device_memory_record> out;
  auto* v = o.if_contains(k);
  if (!v) return out;
  if (!v->is_array()) throw field_error{path + "." + k + ": expected an array"};
  for (std::size_t i = 0; i < v->as_array().size(); ++i) {
    std::string p = fmt::format("{}.{}[{}]", path, k, i);
    const auto& d = obj(v->as_array()[i], p);
    device_memory_record x;
    x.device = str(d, "device", p);
    auto u = [&](const char* f) {
      auto n = num(d, f, p);
      if (n < 0) throw field_error{p + "." + f + ": negative"};
      return static_cast<std::uint64_t>(n);
    };
    x.model_bytes = u("model_bytes");
    x.kv_bytes = u("kv_bytes");
    x.compute_bytes = u("compute_bytes");
    out.push_back(std::move(x));
  }
  return out;
}
}  // namespace

result<farm_state> farm_state_from_json(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return make_error(fmt::format("farm state: not JSON: {}", ec.message()), 2);
  farm_state s;
  try {
    const auto& o = obj(v, "farm");
    s.supervisor_pid = static_cast<int>(num(o, "supervisor_pid", "farm"));
    s.started_wall = num(o, "started_wall", "farm");
    s.phase = str(o, "phase", "farm");
    s.endpoint = str(o, "endpoint", "farm");
    s.strategy = str(o, "strategy", "farm");
    s.source = str(o, "source", "farm");
    auto& bs = need(o, "backends", "farm");
    if (!bs.is_array()) throw field_error{"farm.backends: expected an array"};
    for (std::size_t i = 0; i < bs.as_array().size(); ++i) {
      std::string p = fmt::format("farm.backends[{}]", i);
      const auto& b = obj(bs.as_array()[i], p);
      backend_record r;
      r.name = str(b, "name", p);
      r.kind = str(b, "kind", p);
      r.model = str(b, "model", p);
      r.host = str(b, "host", p);
      r.port = static_cast<int>(num(b, "port", p));
      r.pid = static_cast<int>(num(b, "pid", p));
      r.state = str(b, "state", p);
      r.restarts = static_cast<int>(num(b, "restarts", p));
      r.reason = str(b, "reason", p);
      r.last_exit = str(b, "last_exit", p);
      r.started_wall = num(b, "started_wall", p);
      r.log_path = str(b, "log_path", p);
      r.program = str(b, "program", p);
      r.slots = static_cast<int>(num(b, "slots", p));
      r.predicted_bytes = static_cast<std::uint64_t>(num(b, "predicted_bytes", p));
      if (b.contains("node")) r.node = str(b, "node", p);
      if (b.contains("rss_bytes")) r.rss_bytes = static_cast<std::uint64_t>(num(b, "rss_bytes", p));
      r.predicted_devices = devices_from(b, "predicted_devices", p);
      r.measured_devices = devices_from(b, "measured_devices", p);
      s.backends.push_back(std::move(r));
    }
    auto& ps = need(o, "pools", "farm");
    if (!ps.is_array()) throw field_error{"farm.pools: expected an array"};
    for (std::size_t i = 0; i < ps.as_array().size(); ++i) {
      std::string p = fmt::format("farm.pools[{}]", i);
      const auto& po = obj(ps.as_array()[i], p);
      s.pools.push_back({str(po, "name", p), strs(po, "aliases", p), strs(po, "backends", p)});
    }
    if (auto* ns = o.if_contains("nodes")) {
      if (!ns->is_array()) throw field_error{"farm.nodes: expected an array"};
      for (std::size_t i = 0; i < ns->as_array().size(); ++i) {
        std::string p = fmt::format("farm.nodes[{}]", i);
        const auto& no = obj(ns->as_array()[i], p);
        node_record n;
        n.name = str(no, "name", p);
        n.ssh = str(no, "ssh", p);
        n.address = str(no, "address", p);
        n.agifarm = str(no, "agifarm", p);
        n.llama_bin = str(no, "llama_bin", p);
        n.state_dir = str(no, "state_dir", p);
        n.state = str(no, "state", p);
        n.since_wall = num(no, "since_wall", p);
        n.error = str(no, "error", p);
        n.restarts = static_cast<int>(num(no, "restarts", p));
        n.agifarm_version = str(no, "agifarm_version", p);
        n.llama_version = str(no, "llama_version", p);
        s.nodes.push_back(std::move(n));
      }
    }
    if (o.contains("ssh_options")) s.ssh_options = strs(o, "ssh_options", "farm");
    if (auto* ms = o.if_contains("models")) {
      if (!ms->is_array()) throw field_error{"farm.models: expected an array"};
      for (std::size_t i = 0; i < ms->as_array().size(); ++i) {
        std::string p = fmt::format("farm.models[{}]", i);
        const auto& mo = obj(ms->as_array()[i], p);
        model_record m;
        m.name = str(mo, "name", p);
        m.state = str(mo, "state", p);
        if (auto* b = mo.if_contains("on_demand"); b && b->is_bool()) m.on_demand = b->as_bool();
        if (auto* b = mo.if_contains("pinned"); b && b->is_bool()) m.pinned = b->as_bool();
        m.loads = num(mo, "loads", p);
        m.evictions = num(mo, "evictions", p);
        m.unloads = num(mo, "unloads", p);
        for (auto [k, out] :
             {std::pair{"last_load_s", &m.last_load_s}, std::pair{"total_load_s", &m.total_load_s}})
          if (auto* v = mo.if_contains(k); v && v->is_number()) *out = v->to_number<double>();
        m.reason = str(mo, "reason", p);
        if (mo.contains("saved_tokens")) m.saved_tokens = num(mo, "saved_tokens", p);
        if (mo.contains("restored_tokens")) m.restored_tokens = num(mo, "restored_tokens", p);
        s.models.push_back(std::move(m));
      }
    }
  } catch (const field_error& e) {
    return make_error("farm state at " + e.what, 2);
  }
  return s;
}

std::string default_state_dir() {
  if (const char* e = std::getenv("AGIFARM_STATE_DIR"); e && *e) return e;
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/agifarm";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/state/agifarm";
}

std::string default_llama_bin() {
  if (const char* e = std::getenv("AGIFARM_LLAMA_BIN"); e && *e) return e;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/agifarm/llama.cpp-node-llama-cpp-3.22.1/build/bin";
}

farm_lock& farm_lock::operator=(farm_lock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

farm_lock::~farm_lock() { release(); }

void farm_lock::release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {
struct flock whole_file(short type) {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = 0;
  l.l_len = 0;
  return l;
}
}  // namespace

result<farm_lock> farm_lock::try_acquire(const farm_paths& p) {
  int fd = ::open(p.lock().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(fmt::format("cannot open {}: {}", p.lock(), std::strerror(errno)));
  farm_lock l;
  struct flock want = whole_file(F_WRLCK);
  if (::fcntl(fd, F_OFD_SETLK, &want) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EAGAIN || e == EACCES) return l;  // held by someone else
    return make_error(fmt::format("cannot lock {}: {}", p.lock(), std::strerror(e)));
  }
  l.fd_ = fd;
  return l;
}

bool farm_lock::is_held(const farm_paths& p) {
  int fd = ::open(p.lock().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock q = whole_file(F_WRLCK);
  const bool held = ::fcntl(fd, F_OFD_GETLK, &q) == 0 && q.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

}  // namespace agifarm::farm
