// agifarm: plan, run and serve open LLMs across your own GPUs and machines.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "farm/nodes.hpp"

int main(int argc, char** argv) {
  CLI::App app{"agifarm: plan, run and serve open LLMs across your own GPUs and machines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("agifarm ") + agifarm::farm::k_agifarm_version);
  agifarm::cli::add_inspect_command(app);
  agifarm::cli::add_synth_command(app);
  agifarm::cli::add_hw_command(app);
  agifarm::cli::add_serve_command(app);
  agifarm::cli::add_estimate_command(app);
  agifarm::cli::add_plan_command(app);
  agifarm::cli::add_calibrate_command(app);
  agifarm::cli::add_emit_command(app);
  agifarm::cli::add_up_commands(app);
  agifarm::cli::add_bench_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
