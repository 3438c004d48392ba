// config: reads the gateway's part of a farm YAML file into gateway::config.
//
// Keys read (everything else at the top level belongs to other modules and is ignored):
//   listen: 127.0.0.1:8080
//   threads: 0
//   session_header: x-session-id
//   api_keys: [{name, key | key_env, models: [...], rate_per_minute}]
//   gateway: {max_body_bytes, max_header_bytes, header_timeout_ms, idle_timeout_ms, first_byte_timeout_ms,
//             stream_idle_timeout_ms, max_connections, retries, retry_backoff_ms, eject_after_failures,
//             health_interval_ms, drain_timeout_ms, queue: {max, timeout_ms}, usage_db}
//   pools: [{name, aliases: [...], balance: least_outstanding|prefix_affinity, slots_per_replica,
//            priority, replicas: [{name, url}]}]
// Unknown keys inside gateway/api_keys/pools are errors (typos must not pass silently). Every error
// names file:line:column and the key. Pure functions; thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "gateway/gateway.hpp"

namespace agifarm::gateway {

// env lookup is injectable for tests; default reads the process environment.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;

result<config> config_from_yaml(std::string_view text, const std::string& file_name,
                                const env_lookup& env = {});
result<config> load_config(const std::string& path, const env_lookup& env = {});

struct host_port {
  std::string host;
  int port = 0;
};
// "127.0.0.1:8080", "[::1]:8080", "localhost:80". Errors say what is wrong.
result<host_port> parse_host_port(std::string_view s);
// "http://127.0.0.1:8081" (optional trailing '/'); only http.
result<host_port> parse_http_url(std::string_view url);
bool is_loopback_host(std::string_view host);

}  // namespace agifarm::gateway
