// agifarm up [farm.yaml] [--plan plan.json] [--detach] | status [--json] | down | logs NAME
// Runs a farm on this machine (farm/runner.hpp) and controls it from other terminals.
#include <iostream>

#include "cli/commands.hpp"
#include "farm/runner.hpp"

namespace agifarm::cli {

void add_up_commands(CLI::App& app) {
  static farm::up_options up;
  auto* cmd = app.add_subcommand("up", "Start a farm: backends under a supervisor, the gateway in front "
                                       "(no farm file: a demo farm of two replicas of a tiny model)");
  cmd->add_option("farm", up.farm_file, "farm file (YAML: models, roles, strategy, llama_bin, listen, api_keys)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--plan", up.plan_file, "run this plan (JSON from `agifarm plan --json`) instead of planning")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--detach,-d", up.detach, "run in the background; return once the farm answers");
  cmd->add_option("--state-dir", up.state_dir, "state directory (default: farm file's, $AGIFARM_STATE_DIR, "
                                               "~/.local/state/agifarm)");
  cmd->add_option("--llama-bin", up.llama_bin, "directory with llama-server and ggml-rpc-server");
  cmd->add_option("--listen", up.listen, "gateway address host:port (default 127.0.0.1:8080; port 0: any)");
  cmd->callback([] {
    int rc = farm::run_up(up, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  static farm::control_options ctl;
  auto add_common = [](CLI::App* c) {
    c->add_option("--state-dir", ctl.state_dir, "state directory of the farm (default: $AGIFARM_STATE_DIR, "
                                                "~/.local/state/agifarm)");
    c->add_option("--farm", ctl.farm_file, "use this farm file's state_dir")->check(CLI::ExistingFile);
  };
  static bool as_json = false;
  auto* st = app.add_subcommand("status", "Show the running farm: each backend's pid, port, state, restarts, "
                                          "uptime, memory, requests in flight");
  st->add_flag("--json", as_json, "print JSON");
  add_common(st);
  st->callback([] {
    int rc = farm::run_status(ctl, as_json, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  static int timeout_s = 60;
  auto* down = app.add_subcommand("down", "Stop the running farm gracefully (no backend process is left)");
  down->add_option("--timeout", timeout_s, "seconds to wait before killing (default 60)")->check(CLI::Range(1, 3600));
  add_common(down);
  down->callback([] {
    int rc = farm::run_down(ctl, timeout_s, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  static std::string name;
  static int lines = 100;
  auto* logs = app.add_subcommand("logs", "Print the end of a backend's log ('agifarm' for the farm daemon's own)");
  logs->add_option("name", name, "backend name (see `agifarm status`)")->required();
  logs->add_option("-n,--lines", lines, "how many lines (default 100)")->check(CLI::Range(1, 1000000));
  add_common(logs);
  logs->callback([] {
    int rc = farm::run_logs(ctl, name, lines, std::cout, std::cerr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace agifarm::cli
