// Fuzz target: what a multi-node farm reads from other machines or the user about them: an ssh
// target (user@host[:port]), a node daemon's status answer (farm state JSON, incl. nodes), and a
// node's `agifarm hw --json` (for `hw --ssh`). The first byte picks the parser. Any input must give a
// value or an error that says something, never a crash, hang or leak; a target that parses must print
// back to text that parses to the same target.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "farm/state.hpp"
#include "hw/remote_inventory.hpp"
#include "remote/remote.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto t = agifarm::remote::parse_ssh_target(text);
      if (!t.ok()) {
        if (t.err().message.empty()) __builtin_trap();
        break;
      }
      auto again = agifarm::remote::parse_ssh_target(t->text());
      if (!again.ok() || again->user != t->user || again->host != t->host || again->port != t->port)
        __builtin_trap();
      (void)agifarm::remote::shell_quote(text);
      break;
    }
    case 1: {
      auto s = agifarm::farm::farm_state_from_json(text);
      if (!s.ok() && s.err().message.empty()) __builtin_trap();
      if (s.ok()) (void)agifarm::farm::to_json(*s);
      break;
    }
    default: {
      auto n = agifarm::hw::node_from_hw_json(text);
      if (!n.ok() && n.err().message.empty()) __builtin_trap();
      break;
    }
  }
  return 0;
}
