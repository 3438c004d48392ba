// agifarm emit llama|compose|systemd|vllm|deepspeed|all --plan PLAN.json|- | --farm FARM.yaml -o DIR
// [--force] [...] Writes the files that run a plan with other tools; see docs/emit.md.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.hpp"
#include "emit/emit.hpp"
#include "farm/farm_file.hpp"
#include "farm/sources.hpp"
#include "plan/plan_document.hpp"

namespace agifarm::cli {

void add_emit_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("emit",
                         "Write the files that run a plan: llama.cpp scripts, docker-compose, systemd units, "
                         "vLLM command lines, DeepSpeed ZeRO-3 + Accelerate configs");
  static std::string target, plan_file, farm_path, out_dir, listen;
  static bool force = false;
  static emit::emit_options opt;
  std::vector<std::string> targets = emit::target_names();
  targets.push_back("all");
  cmd->add_option("target", target,
                  "llama | compose | systemd | vllm | deepspeed | all (each into its own subdirectory)")
      ->required()
      ->check(CLI::IsMember(targets));
  auto* plan_opt =
      cmd->add_option("--plan", plan_file, "plan JSON (`agifarm plan --json`); - reads standard input");
  auto* farm_opt =
      cmd->add_option("--farm", farm_path, "a farm file: plan it first (its inventory, or this machine)");
  plan_opt->excludes(farm_opt);
  farm_opt->excludes(plan_opt);
  cmd->add_option("-o,--output", out_dir, "output directory")->required();
  cmd->add_flag("--force", force, "overwrite files that already exist");
  cmd->add_option("--llama-bin-dir", opt.llama_bin_dir,
                  "where llama-server and ggml-rpc-server live on the nodes")
      ->capture_default_str();
  cmd->add_option("--agifarm", opt.agifarm_bin, "path of agifarm on the gateway's node (systemd)")
      ->capture_default_str();
  cmd->add_option("--state-dir", opt.state_dir, "llama scripts: default directory for pid files and logs");
  cmd->add_option("--image", opt.image,
                  "compose: llama-server image (default: llama.cpp's server-cuda / server-rocm / server)");
  cmd->add_option("--rpc-image", opt.rpc_image, "compose: image with GGML_RPC for RPC shards");
  cmd->add_option("--gateway-image", opt.gateway_image, "compose: agifarm image for the gateway")
      ->capture_default_str();
  cmd->add_option("--listen", listen, "gateway address HOST:PORT (default 127.0.0.1:8080)");
  cmd->add_option("--base-port", opt.base_port, "first port for backends the plan left at 0")
      ->capture_default_str();
  cmd->add_option("--user", opt.user, "systemd: account the services run as")->capture_default_str();
  cmd->add_option("--nvme-path", opt.nvme_path, "deepspeed: NVMe directory for parameter offload")
      ->capture_default_str();
  cmd->callback([] {
    auto fail = [](const std::string& msg, int code) {
      std::cerr << "agifarm emit: " << msg << "\n";
      throw CLI::RuntimeError(code);
    };
    if (!listen.empty()) {
      auto colon = listen.rfind(':');
      int port = 0;
      try {
        port = colon == std::string::npos ? 0 : std::stoi(listen.substr(colon + 1));
      } catch (...) {
      }
      if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535)
        fail(fmt::format("--listen '{}': expected HOST:PORT with a port in 1..65535", listen), 2);
      opt.gateway_host = listen.substr(0, colon);
      opt.gateway_port = port;
    }
    if (plan_file.empty() && farm_path.empty())
      fail("give the plan to emit: --plan PLAN.json or --farm FARM.yaml", 2);
    result<emit::emit_input> in = make_error("no input");
    if (!farm_path.empty()) {
      auto ff = farm::load_farm_file(farm_path);
      if (!ff) fail(ff.err().message, ff.err().exit_code);
      std::vector<std::string> notes;
      auto doc = farm::plan_farm_file(*ff, notes);
      if (!doc) fail(doc.err().message, doc.err().exit_code);
      for (const auto& n : notes) std::cerr << "agifarm emit: " << n << "\n";
      in = emit::input_from_plan(*doc, boost::json::serialize(plan::to_json(*doc)));
    } else {
      std::stringstream ss;
      if (plan_file == "-") {
        ss << std::cin.rdbuf();
      } else {
        std::ifstream f(plan_file, std::ios::binary);
        if (!f) fail(fmt::format("cannot read the plan {}", plan_file), 2);
        ss << f.rdbuf();
      }
      in = emit::input_from_plan_text(ss.str());
      if (!in) fail(fmt::format("{}: {}", plan_file, in.err().message), in.err().exit_code);
    }
    // One backend key per emitted farm: `all` writes the same key into each target's farm.env.
    if (opt.backend_key.empty()) opt.backend_key = emit::new_backend_key();
    std::vector<std::string> todo = target == "all" ? emit::target_names() : std::vector<std::string>{target};
    std::vector<std::pair<std::string, emit::files>> outputs;
    for (const auto& t : todo) {
      auto files = emit::emit_target(t, *in, opt);
      if (!files) fail(fmt::format("{}: {}", t, files.err().message), files.err().exit_code);
      outputs.emplace_back(target == "all" ? out_dir + "/" + t : out_dir, std::move(*files));
    }
    // Check every directory first so `all` writes nothing when anything would be overwritten.
    if (!force)
      for (const auto& [dir, files] : outputs)
        for (const auto& file : files)
          if (std::ifstream(dir + "/" + file.path))
            fail(fmt::format("{}/{} already exists; use --force to overwrite", dir, file.path), 1);
    for (const auto& [dir, files] : outputs) {
      if (auto s = emit::write_files(dir, files, force); !s) fail(s.err().message, s.err().exit_code);
      for (const auto& file : files) {
        std::cout << dir << "/" << file.path << "\n";
        if (file.secret)
          std::cerr << "agifarm emit: " << dir << "/" << file.path
                    << " holds the farm's backend key (mode 0600): copy it to the nodes its README names and "
                       "keep it secret\n";
      }
    }
  });
}

}  // namespace agifarm::cli
