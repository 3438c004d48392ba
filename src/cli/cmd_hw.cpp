// agifarm hw [--json] [--no-measure] [--remeasure] | agifarm hw --inventory FILE [--json]
// | agifarm hw --ssh user@host [--ssh ...] [--ssh-option ARG ...] [--agifarm PATH] [--no-measure] [-o FILE]
// Discovers this machine (or validates an inventory file, or writes one from other machines) and prints it.
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/commands.hpp"
#include "hw/hw.hpp"
#include "hw/remote_inventory.hpp"
#include "remote/remote.hpp"

namespace agifarm::cli {

namespace {

// The file appears whole or not at all: written beside it, then renamed over it.
void write_atomically(const std::string& path, const std::string& text) {
  std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      std::cerr << "agifarm hw: " << path << ": cannot write\n";
      throw CLI::RuntimeError(1);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    std::cerr << "agifarm hw: " << path << ": cannot write (" << ec.message() << ")\n";
    throw CLI::RuntimeError(1);
  }
}

}  // namespace

void add_hw_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("hw", "Discover this machine's GPUs, CPU and RAM, or validate an inventory file");
  static std::string inventory_file, catalogue_file;
  static bool as_json = false, no_measure = false, remeasure = false;
  static std::vector<std::string> ssh_targets, ssh_options;
  static std::string agifarm_path, output_file;
  cmd->add_option("--inventory", inventory_file,
                  "validate and print this inventory (YAML) instead of discovering");
  cmd->add_option("--catalogue", catalogue_file,
                  "GPU catalogue to use (default: gpus.yaml in the data directory)");
  cmd->add_flag("--json", as_json, "print JSON");
  cmd->add_flag("--no-measure", no_measure,
                "do not measure RAM bandwidth; use the cached or catalogue figure");
  cmd->add_flag("--remeasure", remeasure, "measure RAM bandwidth again even if a cached figure exists");
  cmd->add_option("--ssh", ssh_targets,
                  "write an inventory from these machines' own discovery (user@host[:port], repeatable)");
  cmd->add_option("--ssh-option", ssh_options,
                  "an extra ssh argument, one word each (--ssh-option=-F --ssh-option=FILE)");
  cmd->add_option("--agifarm", agifarm_path,
                  "with --ssh: the agifarm binary on those machines (default: agifarm on PATH)");
  cmd->add_option("-o,--output", output_file, "with --ssh: write the inventory here (default: print it)");
  cmd->callback([] {
    auto cat = catalogue_file.empty() ? hw::load_default_catalogue() : hw::load_catalogue(catalogue_file);
    if (!cat) {
      std::cerr << "agifarm hw: " << cat.err().message << "\n";
      throw CLI::RuntimeError(cat.err().exit_code);
    }
    if (ssh_targets.empty() && (!ssh_options.empty() || !agifarm_path.empty() || !output_file.empty())) {
      std::cerr << "agifarm hw: --ssh-option, --agifarm and -o go with --ssh\n";
      throw CLI::RuntimeError(2);
    }
    if (!ssh_targets.empty()) {
      if (!inventory_file.empty() || as_json || remeasure) {
        std::cerr << "agifarm hw: --ssh writes an inventory; it does not go with --inventory, --json or "
                     "--remeasure\n";
        throw CLI::RuntimeError(2);
      }
      remote::ssh_shell shell(
          remote::ssh_settings{.options = ssh_options, .control_dir = remote::default_control_dir()});
      hw::remote_inventory_options opt;
      opt.targets = ssh_targets;
      opt.agifarm_path = agifarm_path;
      opt.no_measure = no_measure;
      auto yaml = hw::discover_remote_inventory(shell, *cat, opt);
      if (!yaml) {
        std::cerr << "agifarm hw: " << yaml.err().message << "\n";
        throw CLI::RuntimeError(yaml.err().exit_code);
      }
      if (output_file.empty()) {
        std::cout << *yaml;
      } else {
        write_atomically(output_file, *yaml);
        std::cerr << fmt::format("agifarm hw: wrote {} ({} node{}); declare the links between them there\n",
                                 output_file, ssh_targets.size(), ssh_targets.size() == 1 ? "" : "s");
      }
      return;
    }
    hw::inventory inv;
    std::vector<std::string> notes;
    if (!inventory_file.empty()) {
      auto loaded = hw::load_inventory(inventory_file, *cat);
      if (!loaded) {
        std::cerr << "agifarm hw: " << loaded.err().message << "\n";
        throw CLI::RuntimeError(loaded.err().exit_code);
      }
      inv = std::move(*loaded);
    } else {
      hw::discover_options opt;
      opt.use_cache = !remeasure;
      if (no_measure) {
        // Still take a cached measurement if there is one; never run the loop.
        opt.measure = [] { return 0.0; };
      }
      auto d = hw::discover_local(hw::real_system(), *cat, opt);
      if (!d) {
        std::cerr << "agifarm hw: " << d.err().message << "\n";
        throw CLI::RuntimeError(d.err().exit_code);
      }
      inv = hw::local_inventory(d->local);
      notes = d->notes;
    }
    if (as_json) {
      boost::json::object o = hw::to_json(inv);
      boost::json::array ns;
      for (const auto& n : notes) ns.push_back(boost::json::string(n));
      o["notes"] = std::move(ns);
      o["catalogue"] = cat->source;
      std::cout << boost::json::serialize(o) << "\n";
    } else {
      std::cout << hw::format_table(inv);
      for (const auto& n : notes) std::cout << "note: " << n << "\n";
    }
  });
}

}  // namespace agifarm::cli
