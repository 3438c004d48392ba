#include "farm/farm_file.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "gateway/config.hpp"

namespace agifarm::farm {
namespace {

struct farm_error {
  std::string message;
};

bool defined(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

class reader {
 public:
  explicit reader(std::string file) : file_(std::move(file)) {}

  std::string where(const YAML::Node& n) const {
    YAML::Mark m = n.IsDefined() ? n.Mark() : YAML::Mark();
    if (m.line < 0) return file_;
    return fmt::format("{}:{}:{}", file_, m.line + 1, m.column + 1);
  }
  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& msg) const {
    throw farm_error{fmt::format("{}: key '{}': {}", where(at), key, msg)};
  }
  void check_keys(const YAML::Node& map, const std::string& path,
                  const std::set<std::string>& allowed) const {
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) fail(it->first, path, "keys must be plain names");
      const std::string& k = it->first.Scalar();
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(it->first, path.empty() ? k : path + "." + k,
             fmt::format("unknown key (expected one of: {})", list));
      }
    }
  }
  std::string str(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "must be a string");
    return n.Scalar();
  }
  double number(const YAML::Node& n, const std::string& key, double lo, double hi) const {
    if (!n.IsScalar()) fail(n, key, "must be a number");
    double v = 0;
    try {
      v = n.as<double>();
    } catch (const YAML::Exception&) {
      fail(n, key, fmt::format("'{}' is not a number", n.Scalar()));
    }
    if (!std::isfinite(v) || v < lo || v > hi)
      fail(n, key, fmt::format("{} is out of range [{}, {}]", n.Scalar(), lo, hi));
    return v;
  }
  int integer(const YAML::Node& n, const std::string& key, int lo, int hi) const {
    double v = number(n, key, lo, hi);
    if (v != std::floor(v)) fail(n, key, fmt::format("'{}' must be a whole number", n.Scalar()));
    return static_cast<int>(v);
  }
  bool boolean(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar() || (n.Scalar() != "true" && n.Scalar() != "false"))
      fail(n, key, "must be true or false");
    return n.Scalar() == "true";
  }
  double duration_s(const YAML::Node& n, const std::string& key, double hi) const {
    if (!n.IsScalar()) fail(n, key, "must be a duration (seconds, or 30s, 10m, 2h)");
    auto v = parse_duration_s(n.Scalar());
    if (!v) fail(n, key, fmt::format("'{}' is not a duration (seconds, or 500ms, 30s, 10m, 2h)", n.Scalar()));
    if (*v > hi) fail(n, key, fmt::format("{} is longer than {} s", n.Scalar(), hi));
    return *v;
  }
  std::vector<std::string> strings(const YAML::Node& n, const std::string& key) const {
    if (!n.IsSequence()) fail(n, key, "must be a list of strings");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i) out.push_back(str(n[i], fmt::format("{}[{}]", key, i)));
    return out;
  }

 private:
  std::string file_;
};

std::string expand_path(const std::string& p, const std::string& base_dir, const std::string& home) {
  if (p.empty()) return p;
  if (p[0] == '~' && !home.empty() && (p.size() == 1 || p[1] == '/')) return home + p.substr(1);
  if (p[0] != '/' && p[0] != '~' && !base_dir.empty()) return base_dir + "/" + p;
  return p;
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

farm_file parse(const YAML::Node& root, const reader& r, const std::string& base_dir,
                const std::string& home) {
  farm_file f;
  if (!root.IsDefined() || root.IsNull()) return f;  // an empty file: nothing but defaults
  if (!root.IsMap()) r.fail(root, "(top level)", "a farm file is a mapping of keys (models, roles, ...)");
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == "pools")
      r.fail(it->first, "pools",
             "a farm file does not list pools: they come from the plan (roles name their model)");
  }
  r.check_keys(
      root, "",
      {"models", "roles", "strategy", "inventory", "llama_bin", "state_dir", "supervisor", "listen",
       "threads", "session_header", "api_keys", "gateway", "ssh_options", "allow_public_bind", "on_demand"});

  if (auto ms = root["models"]; defined(ms)) {
    if (!ms.IsMap()) r.fail(ms, "models", "must be a mapping of model name -> GGUF file");
    for (auto it = ms.begin(); it != ms.end(); ++it) {
      model_entry m;
      m.name = r.str(it->first, "models");
      std::string key = "models." + m.name;
      if (!valid_name(m.name)) r.fail(it->first, key, "a model name uses letters, digits, '-', '_' and '.'");
      for (const auto& o : f.models)
        if (o.name == m.name) r.fail(it->first, key, "model listed twice");
      YAML::Node v = it->second;  // a copy: it->second refers into a temporary proxy
      if (v.IsScalar()) {
        m.file = v.Scalar();
      } else if (v.IsMap()) {
        r.check_keys(v, key, {"file", "replicas", "args", "on_demand", "ttl", "pin", "priority"});
        if (!defined(v["file"])) r.fail(v, key + ".file", "missing (path of the GGUF file)");
        m.file = r.str(v["file"], key + ".file");
        if (defined(v["replicas"])) m.replicas = r.integer(v["replicas"], key + ".replicas", 1, 64);
        if (defined(v["args"])) m.args = r.strings(v["args"], key + ".args");
        if (defined(v["on_demand"])) m.on_demand = r.boolean(v["on_demand"], key + ".on_demand");
        for (const char* k : {"ttl", "pin"})
          if (defined(v[k]) && !m.on_demand)
            r.fail(v[k], key + "." + k,
                   "applies to on-demand models only (add `on_demand: true`; an always-on "
                   "model runs until `agifarm down`)");
        if (defined(v["ttl"])) m.ttl_s = r.duration_s(v["ttl"], key + ".ttl", 86400.0 * 365);
        if (defined(v["pin"])) m.pin = r.boolean(v["pin"], key + ".pin");
        if (defined(v["priority"])) m.priority = r.integer(v["priority"], key + ".priority", -1000, 1000);
      } else {
        r.fail(v, key, "must be a file path or {file, replicas, args, on_demand, ttl, pin, priority}");
      }
      if (m.file.empty()) r.fail(v, key, "empty file path");
      m.file = expand_path(m.file, base_dir, home);
      f.models.push_back(std::move(m));
    }
  }

  if (auto rs = root["roles"]; defined(rs)) {
    if (!rs.IsMap()) r.fail(rs, "roles", "must be a mapping of role name -> {model, ctx, agents}");
    for (auto it = rs.begin(); it != rs.end(); ++it) {
      role_entry role;
      role.name = r.str(it->first, "roles");
      std::string key = "roles." + role.name;
      if (!valid_name(role.name))
        r.fail(it->first, key, "a role name uses letters, digits, '-', '_' and '.'");
      for (const auto& o : f.roles)
        if (o.name == role.name) r.fail(it->first, key, "role listed twice");
      YAML::Node v = it->second;  // a copy: it->second refers into a temporary proxy
      if (!v.IsMap()) r.fail(v, key, "must be a mapping {model, ctx, agents}");
      r.check_keys(v, key, {"model", "ctx", "agents"});
      if (!defined(v["model"])) r.fail(v, key + ".model", "missing (a name under models)");
      role.model = r.str(v["model"], key + ".model");
      if (!find_model(f, role.model)) {
        std::string names;
        for (const auto& m : f.models) names += (names.empty() ? "" : ", ") + m.name;
        r.fail(v["model"], key + ".model",
               fmt::format("unknown model '{}' (models: {})", role.model, names.empty() ? "none" : names));
      }
      if (defined(v["ctx"])) role.ctx = r.integer(v["ctx"], key + ".ctx", 256, 16 * 1024 * 1024);
      if (defined(v["agents"])) role.agents = r.integer(v["agents"], key + ".agents", 1, 1024);
      f.roles.push_back(std::move(role));
    }
  }

  if (auto s = root["strategy"]; defined(s)) {
    auto check = [&](const YAML::Node& n, const std::string& key) {
      std::string v = r.str(n, key);
      for (const char* k : k_strategies)
        if (v == k) return v;
      r.fail(n, key,
             fmt::format("unknown strategy '{}' (replica, shard, shard_rpc, expert_offload, hybrid)", v));
    };
    if (s.IsScalar()) {
      f.strategy = check(s, "strategy");
    } else if (s.IsMap()) {
      for (auto it = s.begin(); it != s.end(); ++it) {
        std::string model = r.str(it->first, "strategy");
        if (!find_model(f, model)) r.fail(it->first, "strategy." + model, "not a model under models");
        f.strategy_per_model[model] = check(it->second, "strategy." + model);
      }
    } else {
      r.fail(s, "strategy", "must be a strategy name or a mapping model -> strategy");
    }
  }
  if (auto n = root["inventory"]; defined(n))
    f.inventory = expand_path(r.str(n, "inventory"), base_dir, home);
  if (auto n = root["llama_bin"]; defined(n))
    f.llama_bin = expand_path(r.str(n, "llama_bin"), base_dir, home);
  if (auto n = root["state_dir"]; defined(n))
    f.state_dir = expand_path(r.str(n, "state_dir"), base_dir, home);
  if (auto n = root["ssh_options"]; defined(n)) f.ssh_options = r.strings(n, "ssh_options");
  if (auto n = root["allow_public_bind"]; defined(n)) {
    if (!n.IsScalar() || (n.Scalar() != "true" && n.Scalar() != "false"))
      r.fail(n, "allow_public_bind", "must be true or false");
    f.allow_public_bind = n.Scalar() == "true";
  }

  if (auto s = root["on_demand"]; defined(s)) {
    if (!s.IsMap()) r.fail(s, "on_demand", "must be a mapping {batch_ms, load_timeout_s, save_slots}");
    r.check_keys(s, "on_demand", {"batch_ms", "load_timeout_s", "save_slots"});
    if (auto n = s["batch_ms"]; defined(n))
      f.on_demand.batch_ms = r.number(n, "on_demand.batch_ms", 0, 3600e3);
    if (auto n = s["load_timeout_s"]; defined(n))
      f.on_demand.load_timeout_s = r.number(n, "on_demand.load_timeout_s", 1, 86400);
    if (auto n = s["save_slots"]; defined(n)) f.on_demand.save_slots = r.boolean(n, "on_demand.save_slots");
  }

  if (auto s = root["supervisor"]; defined(s)) {
    if (!s.IsMap()) r.fail(s, "supervisor", "must be a mapping");
    r.check_keys(s, "supervisor",
                 {"start_timeout_s", "max_failures", "failure_window_s", "backoff_initial_s", "backoff_cap_s",
                  "healthy_reset_s", "health_interval_s", "probe_interval_s", "probe_timeout_s",
                  "stop_timeout_s", "log_max_mb", "log_keep"});
    auto& o = f.supervisor;
    auto secs = [&](const char* k, std::optional<double>& out, double lo, double hi) {
      if (auto n = s[k]; defined(n)) out = r.number(n, std::string("supervisor.") + k, lo, hi);
    };
    secs("start_timeout_s", o.start_timeout_s, 1, 86400);
    secs("failure_window_s", o.failure_window_s, 1, 86400 * 7);
    secs("backoff_initial_s", o.backoff_initial_s, 0.1, 3600);
    secs("backoff_cap_s", o.backoff_cap_s, 0.1, 86400);
    secs("healthy_reset_s", o.healthy_reset_s, 1, 86400 * 7);
    secs("health_interval_s", o.health_interval_s, 0.1, 3600);
    secs("probe_interval_s", o.probe_interval_s, 0, 86400);
    secs("probe_timeout_s", o.probe_timeout_s, 0.1, 3600);
    secs("stop_timeout_s", o.stop_timeout_s, 0.1, 3600);
    secs("log_max_mb", o.log_max_mb, 0.01, 1024 * 1024);
    if (auto n = s["max_failures"]; defined(n))
      o.max_failures = r.integer(n, "supervisor.max_failures", 1, 1000);
    if (auto n = s["log_keep"]; defined(n)) o.log_keep = r.integer(n, "supervisor.log_keep", 1, 100);
    if (o.backoff_initial_s && o.backoff_cap_s && *o.backoff_cap_s < *o.backoff_initial_s)
      r.fail(s["backoff_cap_s"], "supervisor.backoff_cap_s", "must not be smaller than backoff_initial_s");
  }
  return f;
}

}  // namespace

const model_entry* find_model(const farm_file& f, std::string_view name) {
  for (const auto& m : f.models)
    if (m.name == name) return &m;
  return nullptr;
}

bool has_on_demand(const farm_file& f) {
  for (const auto& m : f.models)
    if (m.on_demand) return true;
  return false;
}

std::optional<double> parse_duration_s(std::string_view t) {
  if (t.empty() || t.size() > 32) return std::nullopt;
  double scale = 1;
  if (t.size() > 2 && t.substr(t.size() - 2) == "ms") {
    scale = 0.001;
    t.remove_suffix(2);
  } else if (t.back() == 's') {
    t.remove_suffix(1);
  } else if (t.back() == 'm') {
    scale = 60;
    t.remove_suffix(1);
  } else if (t.back() == 'h') {
    scale = 3600;
    t.remove_suffix(1);
  }
  if (t.empty()) return std::nullopt;
  for (char c : t)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.')) return std::nullopt;
  std::string s(t);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v * scale;
}

result<farm_file> parse_farm_file(std::string_view text, const std::string& file_name,
                                  const std::string& base_dir, const std::string& home) {
  const std::string name = file_name.empty() ? "<farm>" : file_name;
  farm_file f;
  bool empty = false;
  try {
    YAML::Node root = YAML::Load(std::string(text));
    empty = !root.IsDefined() || root.IsNull();
    f = parse(root, reader(name), base_dir, home);
    if (!empty && root.Style() == YAML::EmitterStyle::Flow)
      return make_error(
          fmt::format("{}:1:1: write the farm file's top level as a block mapping (key: value lines)", name),
          2);
  } catch (const farm_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::ParserException& e) {
    return make_error(
        fmt::format("{}:{}:{}: YAML syntax error: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg), 2);
  } catch (const YAML::Exception& e) {
    return make_error(fmt::format("{}: {}", name, e.what()), 2);
  } catch (const std::exception& e) {
    return make_error(fmt::format("{}: {}", name, e.what()), 2);
  }
  // The gateway's part of the same text (listen, keys, limits), with its own file:line:column errors.
  // gateway::config_from_yaml insists on pools, which a farm file does not have (they come from the
  // plan): a placeholder pool is appended after the user's text, so line numbers stay the user's.
  if (!empty) {
    std::string with_pool(text);
    if (!with_pool.empty() && with_pool.back() != '\n') with_pool += '\n';
    with_pool +=
        "pools: [{name: agifarm-placeholder, replicas: [{name: agifarm-placeholder-0, url: "
        "\"http://127.0.0.1:9\"}]}]\n";
    auto g = gateway::config_from_yaml(with_pool, name);
    if (!g) return g.err();
    f.gateway = std::move(*g);
    f.gateway.pools.clear();
  }
  f.path = file_name;
  return f;
}

result<farm_file> load_farm_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("cannot read farm file {}", path), 2);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::error_code ec;
  std::string dir = std::filesystem::absolute(std::filesystem::path(path), ec).parent_path().string();
  if (ec || dir.empty()) dir = ".";
  const char* home = std::getenv("HOME");
  return parse_farm_file(text, path, dir, home ? home : "");
}

}  // namespace agifarm::farm
