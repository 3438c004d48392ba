// hw/remote_inventory: an inventory file written from the machines themselves (`agifarm hw --ssh`).
// Each target runs its own discovery (`agifarm hw --json`, and `uname -n` for its name) over a
// remote::remote_shell; the answers become one inventory node each, written as the YAML that
// parse_inventory reads (docs/hardware.md). Links between machines are not discovered: the file says
// so in a comment, and they must be declared by hand.
//
// The pure parts (hw JSON -> node, nodes -> YAML) take text and return result<T>; untrusted remote
// output is checked, never asserted on. discover_remote_inventory() is the orchestration: it asks every
// target (one thread each; the shell must allow concurrent run() calls, as ssh_shell does) and succeeds
// only when every target answered well, so a caller writes a file only for a complete farm. Errors name
// the target as given. Nothing here touches the local filesystem.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "hw/hw.hpp"
#include "remote/remote.hpp"

namespace agifarm::hw {

// The one node that `agifarm hw --json` (discovery, see to_json(inventory)) describes. Its name and
// address stay the discovered ones ("local", 127.0.0.1); the caller sets them. Errors say what is
// missing or wrong ("nodes[0].ram_bytes: missing"), exit code 1.
result<node> node_from_hw_json(std::string_view json_text);

// A node name from a host name: characters a node name may not hold become '-', at most 128;
// "" when nothing usable is left.
std::string node_name_from_hostname(std::string_view hostname);

// The inventory YAML for these nodes: name, ssh, address, agifarm, llama_bin, state_dir, cpu, ram_gb,
// ram_bandwidth_gbs (only when measured, cached or declared), and gpus: `model: <id>` when `cat` knows
// the GPU (by its catalogue id, else by its reported name), else name / vendor / vram_gb /
// bandwidth_gbs / tflops; `pcie:` where the GPU's link differs from what the file would default to.
// Figures are rounded to 0.01 GiB / 0.1 GB/s. An error (naming the node and its ssh target) when a
// figure the file requires is unknown (no RAM size; a GPU outside the catalogue without its bandwidth,
// TFLOPS or VRAM), exit code 1. `header` lines are written first as comments.
result<std::string> inventory_yaml(const std::vector<node>& nodes, const catalogue& cat,
                                   const std::vector<std::string>& header = {});

struct remote_inventory_options {
  std::vector<std::string> targets;  // "user@host[:port]", as given; each becomes a node's `ssh`
  std::string agifarm_path;          // the agifarm binary on the targets ("" = `agifarm` on their PATH)
  bool no_measure = false;           // pass --no-measure to the remote discovery
  std::chrono::milliseconds timeout{120'000};  // per remote command (a first bandwidth measurement ~2 s)
};

// Asks every target and returns the inventory YAML: node names are the machines' host names (clashes
// get -2, -3, ...), `ssh` the target as given, `address` the target's host, `agifarm` the given path.
// Errors: a bad or repeated target (exit 2, before anything runs); otherwise every target that failed
// (unreachable, agifarm missing there, a non-zero exit, output that is not hw JSON) on its own line,
// each naming the target (exit 1).
result<std::string> discover_remote_inventory(remote::remote_shell& shell, const catalogue& cat,
                                              const remote_inventory_options& opt);

}  // namespace agifarm::hw
