// agifarm estimate --inventory FILE|--devices N [--json] [--llama auto|on|off] -- <llama-server arguments>
// Predicts llama.cpp's memory breakdown (model / context / compute per device and host) for exactly
// that command line. Devices: the inventory's GPUs in order, or N identical devices, or the --rpc
// servers of the command line (RPC0, RPC1, ... as llama.cpp names them). For an architecture whose
// graph agifarm does not replay (or with --llama on) it asks llama.cpp itself (fit/fit.hpp) and says so.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <iostream>
#include <optional>

#include "cli/commands.hpp"
#include "farm/state.hpp"
#include "fit/fit.hpp"
#include "hw/hw.hpp"
#include "plan/devices.hpp"
#include "plan/memory_model.hpp"
#include "plan/server_args.hpp"
#include "plan/speed_inputs.hpp"
#include "plan/speed_model.hpp"

namespace agifarm::cli {
namespace {

constexpr double k_mib = 1024.0 * 1024.0;

boost::json::object mem_json(const plan::device_memory& m) {
  return {{"name", m.name},
          {"model_bytes", m.model_bytes},
          {"context_bytes", m.context_bytes},
          {"compute_bytes", m.compute_bytes},
          {"total_bytes", m.total_bytes}};
}

[[noreturn]] void fail(const error& e) {
  fmt::print(stderr, "agifarm estimate: {}\n", e.message);
  throw CLI::RuntimeError(e.exit_code);
}

}  // namespace

void add_estimate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "estimate",
      "Predict llama.cpp's per-device memory (model / context / compute) for a llama-server command line");
  static std::string inventory_file;
  static int n_devices = -1;
  static std::uint64_t device_gib = 24;
  static bool as_json = false;
  static bool with_speed = false;
  static std::string tool = "llama-server";
  static std::vector<std::string> server;
  static std::string ask_llama = "auto";
  static std::string llama_bin;
  cmd->add_option("--inventory", inventory_file, "inventory YAML: devices are its GPUs in order");
  cmd->add_option("--devices", n_devices, "N identical devices (plus the host) instead of an inventory");
  cmd->add_option("--device-gib", device_gib, "memory of each --devices device in GiB (default 24)");
  cmd->add_flag("--json", as_json, "print JSON");
  cmd->add_option("--tool", tool,
                  "whose reservation to model: llama-server (logits for one token per slot) or "
                  "llama-fit-params (a whole micro-batch)")
      ->check(CLI::IsMember({"llama-server", "llama-fit-params"}));
  cmd->add_flag("--speed", with_speed,
                "also predict decode / prefill tokens/s (GPU figures from the inventory; the host from this "
                "machine's discovery)");
  cmd->add_option(
         "--llama", ask_llama,
         "ask llama.cpp itself (llama-fit-params over loopback RPC devices): auto = for architectures "
         "whose graph agifarm does not replay, when a llama.cpp build is found")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--llama-bin", llama_bin,
                  "llama.cpp binaries (default $AGIFARM_LLAMA_BIN or agifarm's own build)");
  cmd->add_option("server_args", server, "llama-server arguments (after --)")->required();
  cmd->callback([] {
    auto args = plan::parse_server_args(server);
    if (!args) fail(args.err());
    if (tool == "llama-fit-params") args->n_outputs_max = 0;
    if (args->model.empty()) fail(make_error("the llama-server arguments have no -m MODEL", 2));
    auto shape = plan::load_model_shape(args->model);
    if (!shape) fail(shape.err());
    std::vector<plan::device_desc> devices = plan::rpc_devices(args->rpc);
    // RPC servers and devices the inventory does not describe: the speed model's GPU defaults
    const plan::compute_unit unknown_gpu{"rpc", plan::k_default_gpu_bandwidth,
                                         plan::k_default_gpu_fp16_tflops * 1e12, false};
    std::vector<plan::compute_unit> units(devices.size(), unknown_gpu);
    std::optional<plan::compute_unit> host;  // from the inventory's first node, else this machine
    double first_gpu_link = 0;
    std::vector<std::string> host_defaults;  // host figures that are defaults, stated as warnings
    auto note_defaults = [&](const hw::node& n) {
      if (n.ram_bandwidth_source == "catalogue")
        host_defaults.push_back(
            fmt::format("{}: RAM bandwidth {:.1f} GB/s is a default (CPU not in data/cpus.yaml, "
                        "ram_bandwidth_gbs not declared)",
                        n.name, n.ram_bandwidth_bytes_per_s / 1e9));
      if (n.cpu_peak_flops <= 0)
        host_defaults.push_back(
            fmt::format("{}: CPU compute is a default of 500 GFLOP/s (CPU not in data/cpus.yaml, "
                        "cpu.ghz not declared)",
                        n.name));
    };
    if (!inventory_file.empty()) {
      auto cat = hw::load_default_catalogue();
      if (!cat) fail(cat.err());
      auto inv = hw::load_inventory(inventory_file, *cat);
      if (!inv) fail(inv.err());
      auto more = plan::inventory_devices(*inv);
      devices.insert(devices.end(), more.begin(), more.end());
      for (const auto& n : inv->nodes)
        for (const auto& g : n.gpus) {
          units.push_back(plan::gpu_unit(g));
          if (first_gpu_link == 0) first_gpu_link = hw::gpu_pcie_link(n.name, g).bandwidth_bytes_per_s;
        }
      if (!inv->nodes.empty()) {
        host = plan::host_unit(inv->nodes[0]);
        note_defaults(inv->nodes[0]);
      }
    } else if (n_devices >= 0) {
      auto more = plan::identical_devices(n_devices, device_gib << 30);
      devices.insert(devices.end(), more.begin(), more.end());
    }
    auto est = plan::estimate_memory(*shape, *args, devices);
    if (!est) fail(est.err());
    // llama.cpp's own answer, for the graphs agifarm does not replay.
    std::string source = "agifarm";
    std::optional<plan::memory_estimate> ours;
    std::vector<std::string> notes;
    const bool exact = plan::replays_graph_exactly(shape->architecture);
    const std::string bin = llama_bin.empty() ? farm::default_llama_bin() : llama_bin;
    const bool have_llama = std::filesystem::exists(bin + "/llama-fit-params");
    if (ask_llama == "on" || (ask_llama == "auto" && !exact && have_llama)) {
      fit::fit_request req;
      req.llama_bin = bin;
      req.n_devices = static_cast<int>(devices.size());
      req.work_dir =
          (std::filesystem::temp_directory_path() / fmt::format("agifarm-fit-{}", ::getpid())).string();
      for (std::size_t i = 0; i < server.size(); ++i) {
        if (server[i] == "--rpc") {
          ++i;
          continue;
        }  // the devices are ours, sized like the planned ones
        req.server_args.push_back(server[i]);
      }
      supervise::posix_launcher launcher;
      auto theirs = fit::ask_llama_fit(req, launcher);
      std::error_code ec;
      std::filesystem::remove_all(req.work_dir, ec);
      if (!theirs) fail(make_error("asking llama.cpp: " + theirs.err().message, 1));
      // llama-fit-params reserves a whole micro-batch of outputs, llama-server one per slot: the
      // difference (the logits rows) comes from agifarm's replay of the tail of the graph.
      auto as_fit = *args;
      as_fit.n_outputs_max = 0;
      auto ours_fit = plan::estimate_memory(*shape, as_fit, devices);
      if (!ours_fit) fail(ours_fit.err());
      auto adjust = [&](plan::device_memory& d, const plan::device_memory& mine,
                        const plan::device_memory& mine_fit) {
        const auto delta =
            static_cast<std::int64_t>(mine.compute_bytes) - static_cast<std::int64_t>(mine_fit.compute_bytes);
        d.compute_bytes = static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, static_cast<std::int64_t>(d.compute_bytes) + delta));
        d.total_bytes = d.model_bytes + d.context_bytes + d.compute_bytes;
      };
      ours = *est;
      for (std::size_t i = 0; i < est->devices.size() && i < theirs->devices.size(); ++i) {
        theirs->devices[i].name = est->devices[i].name;
        adjust(theirs->devices[i], est->devices[i], ours_fit->devices[i]);
        est->devices[i] = theirs->devices[i];
      }
      adjust(theirs->host, est->host, ours_fit->host);
      est->host = theirs->host;
      source = "llama-fit-params";
      est->warnings.erase(std::remove_if(est->warnings.begin(), est->warnings.end(),
                                         [](const std::string& w) {
                                           return w.find("generic estimate") != std::string::npos;
                                         }),
                          est->warnings.end());
      notes.push_back(fmt::format(
          "memory from llama.cpp itself ({}/llama-fit-params over {} loopback RPC devices, MiB "
          "precision){}",
          bin, req.n_devices,
          args->n_outputs_max == 0 ? "" : "; compute adjusted to llama-server's one output row per slot"));
    } else if (!exact && !have_llama) {
      notes.push_back(fmt::format(
          "no llama.cpp build at {} to ask: the compute column is agifarm's generic estimate", bin));
    }
    plan::speed_estimate speed;
    if (with_speed) {
      if (!host) {
        auto cat = hw::load_default_catalogue();
        if (!cat) fail(cat.err());
        auto d = hw::discover_local(hw::real_system(), *cat);
        if (!d) fail(d.err());
        host = plan::host_unit(d->local);
        note_defaults(d->local);
      }
      while (units.size() < devices.size()) {
        units.push_back(unknown_gpu);
        units.back().name = "device";
      }
      plan::speed_input si;
      si.shape = &*shape;
      si.placement = &*est;
      si.devices = units;
      si.host = *host;  // defaults as the planner's where the node lacks a figure (a warning says so)
      si.slots = est->n_slots;
      si.n_ubatch = args->n_ubatch;
      // op offload to the first inventory GPU over its PCIe link (llama.cpp's default unless --no-op-offload)
      if (first_gpu_link > 0 && args->rpc.empty() &&
          std::find(args->ignored.begin(), args->ignored.end(), "--no-op-offload") == args->ignored.end())
        si.offload_link_bytes_per_s = first_gpu_link;
      for (std::size_t i = 0; i + 1 < devices.size(); ++i) si.hops.push_back({20e9, 10e-6});
      speed = plan::estimate_speed(si);
    }
    std::vector<std::string> warnings = est->warnings;
    if (with_speed) warnings.insert(warnings.end(), host_defaults.begin(), host_defaults.end());
    for (const auto& f : args->ignored)
      if (f.rfind("-", 0) == 0 && f != "--host" && f != "--port") warnings.push_back("not modelled: " + f);
    if (as_json) {
      boost::json::array devs;
      for (const auto& d : est->devices) devs.push_back(mem_json(d));
      boost::json::object o{{"devices", devs},
                            {"host", mem_json(est->host)},
                            {"n_ctx", est->n_ctx},
                            {"n_ctx_seq", est->n_ctx_seq},
                            {"n_seq", est->n_slots},
                            {"flash_attn", est->flash_attn},
                            {"expert_layers_on_host", est->expert_layers_on_host},
                            {"output_buffer_bytes", est->output_buffer_bytes},
                            {"decode_tps", speed.decode_tps},
                            {"prefill_tps", speed.prefill_tps},
                            {"aggregate_decode_tps", speed.aggregate_decode_tps},
                            {"source", source},
                            {"notes", boost::json::array(notes.begin(), notes.end())},
                            {"warnings", boost::json::array(warnings.begin(), warnings.end())}};
      if (ours) {
        boost::json::array mine;
        for (const auto& d : ours->devices) mine.push_back(mem_json(d));
        o["agifarm"] = boost::json::object{{"devices", mine}, {"host", mem_json(ours->host)}};
      }
      std::cout << boost::json::serialize(o) << "\n";
      return;
    }
    fmt::print("{}: {} layers, n_ctx {} ({} x {} cells), flash attention {}\n", args->model, shape->n_layer,
               est->n_ctx, est->n_stream, est->n_ctx_seq, est->flash_attn ? "on" : "off");
    fmt::print("{:<28} {:>10} {:>10} {:>10} {:>10}   [MiB]\n", "device", "total", "model", "context",
               "compute");
    auto row = [](const plan::device_memory& d) {
      fmt::print("{:<28} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.0f}\n", d.name, d.total_bytes / k_mib,
                 d.model_bytes / k_mib, d.context_bytes / k_mib, d.compute_bytes / k_mib);
    };
    for (const auto& d : est->devices) row(d);
    row(est->host);
    if (with_speed)
      fmt::print("predicted: decode {:.1f} tok/s, prefill {:.1f} tok/s, {:.1f} tok/s with {} slots busy\n",
                 speed.decode_tps, speed.prefill_tps, speed.aggregate_decode_tps, est->n_slots);
    if (ours) {
      fmt::print("agifarm's own estimate, for comparison:\n");
      for (const auto& d : ours->devices) row(d);
      row(ours->host);
    }
    for (const auto& n : notes) fmt::print("source: {}\n", n);
    for (const auto& w : warnings) fmt::print("warning: {}\n", w);
  });
}

}  // namespace agifarm::cli
