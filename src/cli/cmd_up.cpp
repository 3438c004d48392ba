// agifarm up [farm.yaml] [--plan plan.json] [--detach] | status [--json] | down | logs NAME
// Runs a farm on this machine (farm/runner.hpp) and controls it from other terminals.
#include <iostream>

#include "cli/commands.hpp"
#include "farm/nodes.hpp"
#include "farm/runner.hpp"
#include "farm/state.hpp"

namespace agifarm::cli {

void add_up_commands(CLI::App& app) {
  static farm::up_options up;
  auto* cmd = app.add_subcommand("up",
                                 "Start a farm: backends under a supervisor, the gateway in front "
                                 "(no farm file: a demo farm of two replicas of a tiny model)");
  cmd->add_option("farm", up.farm_file,
                  "farm file (YAML: models, roles, strategy, llama_bin, listen, api_keys)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--plan", up.plan_file,
                  "run this plan (JSON from `agifarm plan --json`) instead of planning")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--detach,-d", up.detach, "run in the background; return once the farm answers");
  cmd->add_option("--state-dir", up.state_dir,
                  "state directory (default: farm file's, $AGIFARM_STATE_DIR, "
                  "~/.local/state/agifarm)");
  cmd->add_option("--llama-bin", up.llama_bin, "directory with llama-server and ggml-rpc-server");
  cmd->add_option("--listen", up.listen, "gateway address host:port (default 127.0.0.1:8080; port 0: any)");
  cmd->callback([] {
    int rc = farm::run_up(up, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  static farm::control_options ctl;
  auto add_common = [](CLI::App* c) {
    c->add_option("--state-dir", ctl.state_dir,
                  "state directory of the farm (default: $AGIFARM_STATE_DIR, "
                  "~/.local/state/agifarm)");
    c->add_option("--farm", ctl.farm_file, "use this farm file's state_dir")->check(CLI::ExistingFile);
  };
  static bool as_json = false;
  auto* st = app.add_subcommand("status",
                                "Show the running farm: each backend's pid, port, state, restarts, "
                                "uptime, memory, requests in flight");
  st->add_flag("--json", as_json, "print JSON");
  add_common(st);
  st->callback([] {
    int rc = farm::run_status(ctl, as_json, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  static int timeout_s = 60;
  auto* down = app.add_subcommand("down", "Stop the running farm gracefully (no backend process is left)");
  down->add_option("--timeout", timeout_s, "seconds to wait before killing (default 60)")
      ->check(CLI::Range(1, 3600));
  add_common(down);
  down->callback([] {
    int rc = farm::run_down(ctl, timeout_s, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  // agifarm node VERB: what a controller runs on a node over ssh (farm/nodes.hpp). Hidden from help:
  // users run `up`, `status`, `down`, `logs` on the controller.
  auto* node =
      app.add_subcommand("node", "A node daemon of a multi-node farm (run by `agifarm up` over ssh)");
  node->group("");
  node->require_subcommand(1);
  static farm::up_options nup;
  static farm::control_options nctl;
  static std::string info_bin;
  auto* ninfo = node->add_subcommand("info", "Print this node's agifarm and llama.cpp versions as JSON");
  ninfo->add_option("--llama-bin", info_bin,
                    "llama.cpp binaries (default: $AGIFARM_LLAMA_BIN, the agifarm cache)");
  ninfo->callback([] {
    std::cout << farm::node_info_json(info_bin.empty() ? farm::default_llama_bin() : info_bin) << '\n';
  });
  auto* nup_cmd =
      node->add_subcommand("up", "Start this node's part of a farm (the deployment JSON on stdin), detached");
  nup_cmd->add_option("--name", nup.node_name, "the node's name in the inventory")->required();
  nup_cmd->add_option("--state-dir", nup.state_dir,
                      "state directory (default: <default state dir>/node-NAME)");
  nup_cmd->add_option("--llama-bin", nup.llama_bin, "directory with llama-server and ggml-rpc-server");
  nup_cmd->callback([] {
    nup.node_mode = true;
    nup.detach = true;
    nup.plan_file = "-";
    int rc = farm::run_up(nup, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
  auto add_node_common = [](CLI::App* c) {
    c->add_option("--name", nctl.node_name, "the node's name in the inventory")->required();
    c->add_option("--state-dir", nctl.state_dir, "state directory (default: <default state dir>/node-NAME)");
  };
  auto* nstatus = node->add_subcommand("status", "This node's farm as JSON (exit 1: none running)");
  add_node_common(nstatus);
  nstatus->callback([] {
    nctl.brief = true;
    int rc = farm::run_status(nctl, true, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
  auto* ndown = node->add_subcommand("down", "Stop this node's backends");
  add_node_common(ndown);
  ndown->callback([] {
    int rc = farm::run_down(nctl, 60, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
  static std::string nlog_name;
  static int nlog_lines = 100;
  auto* nlogs = node->add_subcommand("logs", "The end of one of this node's backend logs");
  add_node_common(nlogs);
  nlogs->add_option("backend", nlog_name, "backend name")->required();
  nlogs->add_option("-n,--lines", nlog_lines, "how many lines")->check(CLI::Range(1, 1000000));
  nlogs->callback([] {
    int rc = farm::run_logs(nctl, nlog_name, nlog_lines, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  static std::string name;
  static int lines = 100;
  auto* logs =
      app.add_subcommand("logs", "Print the end of a backend's log ('agifarm' for the farm daemon's own)");
  logs->add_option("name", name,
                   "backend name (see `agifarm status`), or NODE/NAME for a remote node's backend")
      ->required();
  logs->add_option("-n,--lines", lines, "how many lines (default 100)")->check(CLI::Range(1, 1000000));
  add_common(logs);
  logs->callback([] {
    int rc = farm::run_logs(ctl, name, lines, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace agifarm::cli
