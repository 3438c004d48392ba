#include "gateway/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

namespace agifarm::gateway {
namespace {

// Thrown inside this file only; converted to an error value at the edge.
struct config_error {
  std::string message;
};

struct reader {
  const std::string& file;
  const env_lookup& env;

  std::string where(const YAML::Node& n) const {
    auto m = n.Mark();
    if (m.line < 0) return file;
    return fmt::format("{}:{}:{}", file, m.line + 1, m.column + 1);
  }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& key, const std::string& what) const {
    throw config_error{fmt::format("{}: {}: {}", where(n), key, what)};
  }

  void expect_map(const YAML::Node& n, const std::string& key) const {
    if (!n.IsMap()) fail(n, key, "expected a mapping");
  }
  void check_keys(const YAML::Node& n, const std::string& key,
                  std::initializer_list<const char*> allowed) const {
    expect_map(n, key);
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = it->first.IsScalar() ? it->first.Scalar() : std::string("?");
      bool ok = false;
      for (auto* a : allowed) ok = ok || k == a;
      if (!ok) {
        std::string list;
        for (auto* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        fail(it->first, key + "." + k, "unknown key (known: " + list + ")");
      }
    }
  }
  std::string str(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "expected a string");
    return n.Scalar();
  }
  std::int64_t integer(const YAML::Node& n, const std::string& key, std::int64_t lo, std::int64_t hi) const {
    if (!n.IsScalar()) fail(n, key, "expected an integer");
    const std::string& s = n.Scalar();
    std::size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(s, &pos, 10);
    } catch (...) {
      fail(n, key, fmt::format("expected an integer, got '{}'", s));
    }
    if (pos != s.size()) fail(n, key, fmt::format("expected an integer, got '{}'", s));
    if (v < lo || v > hi) fail(n, key, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    return v;
  }
  int int_in(const YAML::Node& n, const std::string& key, int lo, int hi) const {
    return static_cast<int>(integer(n, key, lo, hi));
  }
  std::vector<std::string> strings(const YAML::Node& n, const std::string& key) const {
    std::vector<std::string> out;
    if (!n.IsSequence()) fail(n, key, "expected a list of strings");
    for (std::size_t i = 0; i < n.size(); ++i) out.push_back(str(n[i], fmt::format("{}[{}]", key, i)));
    return out;
  }

  void read_gateway(const YAML::Node& g, config& c) const {
    check_keys(g, "gateway",
               {"max_body_bytes", "max_header_bytes", "header_timeout_ms", "idle_timeout_ms",
                "first_byte_timeout_ms", "connect_timeout_ms", "stream_idle_timeout_ms", "max_connections",
                "retries", "retry_backoff_ms", "eject_after_failures", "health_interval_ms",
                "drain_timeout_ms", "queue", "usage_db"});
    auto& l = c.limits;
    const int k_day_ms = 24 * 3600 * 1000;
    for (auto it = g.begin(); it != g.end(); ++it) {
      std::string k = it->first.Scalar();
      const YAML::Node v = it->second;  // a copy: the iterator yields a temporary pair
      std::string key = "gateway." + k;
      if (k == "max_body_bytes")
        l.max_body_bytes = static_cast<std::uint64_t>(integer(v, key, 1, std::int64_t{1} << 40));
      else if (k == "max_header_bytes")
        l.max_header_bytes = static_cast<std::uint32_t>(integer(v, key, 256, 1 << 24));
      else if (k == "header_timeout_ms")
        l.header_timeout_ms = int_in(v, key, 1, k_day_ms);
      else if (k == "idle_timeout_ms")
        l.idle_timeout_ms = int_in(v, key, 1, k_day_ms);
      else if (k == "first_byte_timeout_ms")
        l.first_byte_timeout_ms = int_in(v, key, 1, k_day_ms);
      else if (k == "connect_timeout_ms")
        l.connect_timeout_ms = int_in(v, key, 1, k_day_ms);
      else if (k == "stream_idle_timeout_ms")
        l.stream_idle_timeout_ms = int_in(v, key, 1, k_day_ms);
      else if (k == "max_connections")
        l.max_connections = int_in(v, key, 1, 1 << 22);
      else if (k == "retries")
        l.retries = int_in(v, key, 0, 16);
      else if (k == "retry_backoff_ms")
        l.retry_backoff_ms = int_in(v, key, 0, 60000);
      else if (k == "eject_after_failures")
        l.eject_after_failures = int_in(v, key, 1, 1000);
      else if (k == "health_interval_ms")
        l.health_interval_ms = int_in(v, key, 10, k_day_ms);
      else if (k == "drain_timeout_ms")
        l.drain_timeout_ms = int_in(v, key, 0, k_day_ms);
      else if (k == "usage_db")
        c.usage_db = str(v, key);
      else if (k == "queue") {
        check_keys(v, key, {"max", "timeout_ms"});
        if (v["max"]) c.queue.max = int_in(v["max"], key + ".max", 0, 1 << 22);
        if (v["timeout_ms"]) c.queue.timeout_ms = int_in(v["timeout_ms"], key + ".timeout_ms", 0, k_day_ms);
      }
    }
  }

  // The value of the environment variable a `key_env` names; unset is an error naming the key.
  std::string env_value(const YAML::Node& n, const std::string& key) const {
    std::string var = str(n, key);
    std::optional<std::string> value;
    if (env)
      value = env(var);
    else if (const char* p = std::getenv(var.c_str()))
      value = std::string(p);
    if (!value) fail(n, key, "environment variable " + var + " is not set");
    return *value;
  }

  api_key_config read_key(const YAML::Node& n, const std::string& key) const {
    check_keys(n, key, {"name", "key", "key_env", "models", "rate_per_minute"});
    api_key_config k;
    if (!n["name"]) fail(n, key + ".name", "missing");
    k.name = str(n["name"], key + ".name");
    if (k.name.empty()) fail(n["name"], key + ".name", "must not be empty");
    if (n["key"] && n["key_env"]) fail(n, key, "give either key or key_env, not both");
    if (n["key"]) {
      k.key = str(n["key"], key + ".key");
    } else if (n["key_env"]) {
      k.key = env_value(n["key_env"], key + ".key_env");
    } else {
      fail(n, key, "missing key or key_env");
    }
    if (k.key.size() < 8) fail(n, key + ".key", "the key must be at least 8 characters");
    if (n["models"]) k.models = strings(n["models"], key + ".models");
    if (n["rate_per_minute"])
      k.rate_per_minute = int_in(n["rate_per_minute"], key + ".rate_per_minute", 0, 1 << 24);
    return k;
  }

  pool_config read_pool(const YAML::Node& n, const std::string& key) const {
    check_keys(n, key, {"name", "aliases", "balance", "slots_per_replica", "priority", "replicas"});
    pool_config p;
    if (!n["name"]) fail(n, key + ".name", "missing");
    p.name = str(n["name"], key + ".name");
    if (p.name.empty()) fail(n["name"], key + ".name", "must not be empty");
    if (n["aliases"]) p.aliases = strings(n["aliases"], key + ".aliases");
    if (n["balance"]) {
      std::string b = str(n["balance"], key + ".balance");
      if (b == "least_outstanding")
        p.policy = balance::least_outstanding;
      else if (b == "prefix_affinity")
        p.policy = balance::prefix_affinity;
      else
        fail(n["balance"], key + ".balance", "'" + b + "' is not one of least_outstanding, prefix_affinity");
    }
    if (n["slots_per_replica"])
      p.slots_per_replica = int_in(n["slots_per_replica"], key + ".slots_per_replica", 1, 4096);
    if (n["priority"]) p.priority = int_in(n["priority"], key + ".priority", -1000, 1000);
    if (!n["replicas"]) fail(n, key + ".replicas", "missing");
    const YAML::Node& rs = n["replicas"];
    if (!rs.IsSequence() || rs.size() == 0) fail(rs, key + ".replicas", "expected a non-empty list");
    for (std::size_t i = 0; i < rs.size(); ++i) {
      std::string rk = fmt::format("{}.replicas[{}]", key, i);
      check_keys(rs[i], rk, {"name", "url", "key", "key_env"});
      replica_config r;
      if (rs[i]["key"] && rs[i]["key_env"]) fail(rs[i], rk, "give either key or key_env, not both");
      if (rs[i]["key"]) r.api_key = str(rs[i]["key"], rk + ".key");
      if (rs[i]["key_env"]) r.api_key = env_value(rs[i]["key_env"], rk + ".key_env");
      if (r.api_key.find_first_of("\r\n") != std::string::npos)
        fail(rs[i], rk + ".key", "the key must be one line");
      if (!rs[i]["url"]) fail(rs[i], rk + ".url", "missing");
      r.url = str(rs[i]["url"], rk + ".url");
      auto u = parse_http_url(r.url);
      if (!u) fail(rs[i]["url"], rk + ".url", u.err().message);
      r.name = rs[i]["name"] ? str(rs[i]["name"], rk + ".name") : p.name + "-" + std::to_string(i);
      p.replicas.push_back(std::move(r));
    }
    return p;
  }

  config read(const YAML::Node& root) const {
    config c;
    if (!root.IsDefined() || root.IsNull()) throw config_error{file + ": the file is empty"};
    expect_map(root, "(top level)");
    if (auto n = root["listen"]) {
      auto hp = parse_host_port(str(n, "listen"));
      if (!hp) fail(n, "listen", hp.err().message);
      c.listen_host = hp->host;
      c.listen_port = hp->port;
    }
    if (auto n = root["threads"]) c.threads = int_in(n, "threads", 0, 1024);
    if (auto n = root["session_header"]) c.session_header = str(n, "session_header");
    if (auto n = root["gateway"]) read_gateway(n, c);
    if (auto n = root["api_keys"]) {
      if (!n.IsSequence()) fail(n, "api_keys", "expected a list");
      for (std::size_t i = 0; i < n.size(); ++i)
        c.api_keys.push_back(read_key(n[i], fmt::format("api_keys[{}]", i)));
    }
    auto pools = root["pools"];
    if (!pools) fail(root, "pools", "missing (the gateway needs at least one pool)");
    if (!pools.IsSequence() || pools.size() == 0) fail(pools, "pools", "expected a non-empty list");
    for (std::size_t i = 0; i < pools.size(); ++i)
      c.pools.push_back(read_pool(pools[i], fmt::format("pools[{}]", i)));
    auto v = validate(c);
    if (!v) throw config_error{file + ": " + v.err().message};
    return c;
  }
};

}  // namespace

bool is_loopback_host(std::string_view host) {
  return host == "localhost" || host == "::1" || host.substr(0, 4) == "127.";
}

result<host_port> parse_host_port(std::string_view s) {
  host_port hp;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return make_error(fmt::format("'{}' is not [ipv6]:port", s));
    hp.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return make_error(fmt::format("'{}' has no :port", s));
    hp.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
  }
  if (hp.host.empty()) return make_error(fmt::format("'{}' has no host", s));
  if (port.empty() || port.size() > 5) return make_error(fmt::format("'{}' has no valid port", s));
  int p = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return make_error(fmt::format("'{}': port '{}' is not a number", s, port));
    p = p * 10 + (ch - '0');
  }
  if (p > 65535) return make_error(fmt::format("'{}': port {} is out of range", s, p));
  hp.port = p;
  return hp;
}

result<host_port> parse_http_url(std::string_view url) {
  constexpr std::string_view k_scheme = "http://";
  if (url.substr(0, k_scheme.size()) != k_scheme)
    return make_error(
        fmt::format("'{}' is not an http:// URL (only plain http backends are supported)", url));
  std::string_view rest = url.substr(k_scheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos)
    return make_error(fmt::format("'{}': a backend URL has no path", url));
  auto hp = parse_host_port(rest);
  if (!hp) return make_error(fmt::format("backend URL {}", hp.err().message));
  if (hp->port == 0) return make_error(fmt::format("'{}': port 0 is not a backend port", url));
  return hp;
}

status validate(const config& c) {
  std::set<std::string> names;  // pool names and aliases share one namespace
  std::map<std::string, std::string> replica_urls;
  if (c.pools.empty()) return make_error("no pools configured");
  for (const auto& p : c.pools) {
    if (!names.insert(p.name).second)
      return make_error(fmt::format("pool '{}': the name is used twice", p.name));
  }
  for (const auto& p : c.pools) {
    for (const auto& a : p.aliases) {
      if (a.empty()) return make_error(fmt::format("pool '{}': an alias is empty", p.name));
      if (!names.insert(a).second)
        return make_error(
            fmt::format("pool '{}': alias '{}' is already a pool name or another pool's alias", p.name, a));
    }
    if (p.replicas.empty()) return make_error(fmt::format("pool '{}': no replicas", p.name));
    if (p.slots_per_replica < 1)
      return make_error(fmt::format("pool '{}': slots_per_replica must be >= 1", p.name));
    std::set<std::string> in_pool;
    for (const auto& r : p.replicas) {
      if (r.name.empty()) return make_error(fmt::format("pool '{}': a replica has no name", p.name));
      if (!in_pool.insert(r.name).second)
        return make_error(fmt::format("pool '{}': replica '{}' is listed twice", p.name, r.name));
      auto u = parse_http_url(r.url);
      if (!u) return make_error(fmt::format("pool '{}', replica '{}': {}", p.name, r.name, u.err().message));
      auto [it, fresh] = replica_urls.emplace(r.name, r.url);
      if (!fresh && it->second != r.url)
        return make_error(fmt::format("replica '{}' has two URLs: {} and {}", r.name, it->second, r.url));
    }
  }
  std::set<std::string> key_names, key_values;
  for (const auto& k : c.api_keys) {
    if (!key_names.insert(k.name).second)
      return make_error(fmt::format("api key '{}': the name is used twice", k.name));
    if (!key_values.insert(k.key).second)
      return make_error(fmt::format("api key '{}': the same key is given twice", k.name));
    for (const auto& m : k.models)
      if (!names.count(m))
        return make_error(fmt::format("api key '{}': model '{}' is neither a pool nor an alias", k.name, m));
  }
  if (c.api_keys.empty() && !is_loopback_host(c.listen_host))
    return make_error(
        fmt::format("listen {}: without api_keys the gateway binds to loopback only (use 127.0.0.1 or "
                    "configure api_keys)",
                    c.listen_host));
  if (c.listen_port < 0 || c.listen_port > 65535) return make_error("listen port out of range");
  return {};
}

result<config> config_from_yaml(std::string_view text, const std::string& file_name, const env_lookup& env) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    reader r{file_name, env};
    return r.read(root);
  } catch (const config_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::Exception& e) {
    return make_error(
        fmt::format("{}:{}:{}: YAML syntax: {}", file_name, e.mark.line + 1, e.mark.column + 1, e.msg), 2);
  } catch (const std::exception& e) {
    return make_error(fmt::format("{}: {}", file_name, e.what()), 2);
  }
}

result<config> load_config(const std::string& path, const env_lookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("{}: cannot open the config file", path), 2);
  std::ostringstream ss;
  ss << in.rdbuf();
  return config_from_yaml(ss.str(), path, env);
}

}  // namespace agifarm::gateway
