// libFuzzer target over the gateway's farm-file parser (YAML -> gateway::config + validation).
#include <cstddef>
#include <cstdint>
#include <string>

#include "gateway/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "KEY") return std::string("sk-fuzz-0123456789");
    return std::nullopt;
  };
  auto c = agifarm::gateway::config_from_yaml(text, "fuzz.yaml", env);
  if (c.ok() && c->pools.empty()) __builtin_trap();  // a config that parses always has a pool
  if (!c.ok() && c.err().message.rfind("fuzz.yaml", 0) != 0) __builtin_trap();  // errors name the file
  return 0;
}
