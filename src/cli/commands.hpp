// The agifarm command line: each subcommand lives in its own cmd_<name>.cpp and registers itself
// here. Commands only parse flags, call module APIs and print; the work is in the modules.
// A command reports failure by throwing CLI::RuntimeError(exit_code) after printing the error.
#pragma once

#include <CLI/CLI.hpp>

namespace agifarm::cli {

void add_inspect_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_hw_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_estimate_command(CLI::App& app);
void add_plan_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_emit_command(CLI::App& app);
void add_up_commands(CLI::App& app);  // up, status, down, logs
void add_bench_command(CLI::App& app);

}  // namespace agifarm::cli
