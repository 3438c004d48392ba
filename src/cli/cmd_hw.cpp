// agifarm hw [--json] [--no-measure] [--remeasure] | agifarm hw --inventory FILE [--json]
// Discovers this machine (or validates an inventory file) and prints it.
#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

#include "cli/commands.hpp"
#include "hw/hw.hpp"

namespace agifarm::cli {

void add_hw_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("hw", "Discover this machine's GPUs, CPU and RAM, or validate an inventory file");
  static std::string inventory_file, catalogue_file;
  static bool as_json = false, no_measure = false, remeasure = false;
  cmd->add_option("--inventory", inventory_file, "validate and print this inventory (YAML) instead of discovering");
  cmd->add_option("--catalogue", catalogue_file, "GPU catalogue to use (default: gpus.yaml in the data directory)");
  cmd->add_flag("--json", as_json, "print JSON");
  cmd->add_flag("--no-measure", no_measure, "do not measure RAM bandwidth; use the cached or catalogue figure");
  cmd->add_flag("--remeasure", remeasure, "measure RAM bandwidth again even if a cached figure exists");
  cmd->callback([] {
    auto cat = catalogue_file.empty() ? hw::load_default_catalogue() : hw::load_catalogue(catalogue_file);
    if (!cat) {
      std::cerr << "agifarm hw: " << cat.err().message << "\n";
      throw CLI::RuntimeError(cat.err().exit_code);
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
