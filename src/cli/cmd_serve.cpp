// agifarm serve --config farm.yaml [--listen HOST:PORT] [--threads N]
// Runs the OpenAI-compatible gateway over the pools of the farm file until SIGINT/SIGTERM, then drains.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>

#include "cli/commands.hpp"
#include "gateway/config.hpp"
#include "gateway/gateway.hpp"

namespace agifarm::cli {

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Run the OpenAI-compatible gateway over the pools of a farm file");
  static std::string config_file, listen;
  static int threads = -1;
  cmd->add_option("--config", config_file, "farm YAML file (listen, api_keys, gateway, pools)")->required();
  cmd->add_option("--listen", listen,
                  "override the listen address, e.g. 127.0.0.1:8080 (port 0: any free port)");
  cmd->add_option("--threads", threads, "worker threads (0: one per core)");
  cmd->callback([] {
    auto cfg = gateway::load_config(config_file);
    if (!cfg) {
      std::cerr << "agifarm serve: " << cfg.err().message << "\n";
      throw CLI::RuntimeError(cfg.err().exit_code);
    }
    if (!listen.empty()) {
      auto hp = gateway::parse_host_port(listen);
      if (!hp) {
        std::cerr << "agifarm serve: --listen " << hp.err().message << "\n";
        throw CLI::RuntimeError(2);
      }
      cfg->listen_host = hp->host;
      cfg->listen_port = hp->port;
    }
    if (threads >= 0) cfg->threads = threads;
    // Block the stop signals before the workers start so only sigwait below sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    gateway::server srv(*cfg);
    if (auto s = srv.start(); !s) {
      std::cerr << "agifarm serve: " << s.err().message << "\n";
      throw CLI::RuntimeError(s.err().exit_code == 1 ? 1 : s.err().exit_code);
    }
    // The line scripts and tests wait for: the address actually bound.
    std::cout << fmt::format("agifarm gateway listening on http://{}:{}", cfg->listen_host, srv.port())
              << std::endl;
    int sig = 0;
    sigwait(&set, &sig);
    spdlog::info("gateway: signal {}, draining", sig);
    srv.stop();
  });
}

}  // namespace agifarm::cli
