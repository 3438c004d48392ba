// Integration: agifarm's MoE expert-offload choice side by side with llama.cpp's --fit
// (llama-fit-params) for the same model (a shape file of Qwen3-30B-A3B Q4_K_M), the same devices (real
// ggml-rpc-server processes on loopback) and the same free-memory target. agifarm must keep at least as
// many expert layers whole on the GPUs as llama-fit-params does, and llama.cpp's own projection of
// agifarm's -ot rule must agree with agifarm's estimate within 2% per device.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "plan/devices.hpp"
#include "plan/planner.hpp"
#include "plan/server_args.hpp"
#include "support/support.hpp"

namespace agifarm::plan {
namespace {

constexpr std::uint64_t k_mib = 1024 * 1024;

// Device rows of the first memory breakdown table: name -> (total MiB, self MiB).
std::vector<std::pair<long, long>> device_rows(const std::string& out) {
  std::vector<std::pair<long, long>> rows;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("common_memory_breakdown_print: |   - RPC") == std::string::npos) continue;
    auto bar = line.find('|', line.find("- RPC"));
    long total = 0, free = 0, self = 0;
    if (std::sscanf(line.c_str() + bar + 1, " %ld = %ld + ( %ld", &total, &free, &self) == 3)
      rows.push_back({total, self});
    if (rows.size() >= 8) break;
  }
  return rows;
}

class offload_vs_fit : public ::testing::TestWithParam<int> {};

TEST_P(offload_vs_fit, keeps_at_least_as_many_expert_layers_on_gpu_and_projections_agree) {
  const int n_dev = GetParam();
  std::string dir = test::temp_dir(fmt::format("offload_vs_fit_{}", n_dev));
  std::string model = dir + "/qwen3-30b-a3b.gguf";
  auto w = test::run(
      {test::agifarm_cli(), "synth", "shape", "--model", "qwen3-30b-a3b", "--quant", "Q4_K_M", "-o", model});
  ASSERT_EQ(w.exit_code, 0) << w.output;
  std::vector<test::child> rpcs;
  std::string rpc;
  for (int i = 0; i < n_dev; ++i) {
    int port = test::free_port();
    rpcs.emplace_back(std::vector<std::string>{test::llama_bin() + "/ggml-rpc-server", "-H", "127.0.0.1",
                                               "-p", std::to_string(port)},
                      dir + fmt::format("/rpc{}.log", i));
    ASSERT_TRUE(test::wait_until([&] { return test::port_open(port); }, std::chrono::seconds(30)));
    rpc += fmt::format("{}127.0.0.1:{}", i ? "," : "", port);
  }
  // Free-memory target that forces offload: leave all but ~12 GiB (1 device) / ~7 GiB each (2 devices).
  const long target_mib = n_dev == 1 ? 12000 : 17000;
  std::vector<std::string> base{"-m", model, "--rpc", rpc, "-c", "32768", "-np", "1"};

  // llama.cpp's choice
  std::vector<std::string> fit{test::llama_bin() + "/llama-fit-params", "-lv", "4", "-fitt",
                               std::to_string(target_mib)};
  fit.insert(fit.end(), base.begin(), base.end());
  auto r = test::run(fit, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto rows = device_rows(r.output);
  ASSERT_GE(rows.size(), static_cast<std::size_t>(n_dev)) << r.output;
  const auto fitted_line = r.output.substr(r.output.rfind("-c "));
  std::set<int> fit_host_layers;
  std::regex cpu_rule(R"(blk\\\.(\d+)\\\.ffn_[^,"]*=CPU)");
  for (auto it = std::sregex_iterator(fitted_line.begin(), fitted_line.end(), cpu_rule);
       it != std::sregex_iterator(); ++it)
    fit_host_layers.insert(std::stoi((*it)[1]));
  ASSERT_FALSE(fit_host_layers.empty())
      << "the target should force llama.cpp to offload experts: " << fitted_line;

  // agifarm's choice on the same devices and target
  auto shape = load_model_shape(model);
  ASSERT_TRUE(shape.ok());
  auto args = parse_server_args(base);
  ASSERT_TRUE(args.ok());
  args->n_outputs_max = 0;  // llama-fit-params reserves a whole micro-batch of outputs
  auto devs = rpc_devices(args->rpc);
  for (std::size_t i = 0; i < devs.size(); ++i)
    devs[i].free_bytes = static_cast<std::uint64_t>(rows[i].first) * k_mib;
  auto choice = choose_offload(*shape, *args, devs, static_cast<std::uint64_t>(target_mib) * k_mib);
  ASSERT_TRUE(choice.ok()) << choice.err().message;
  ASSERT_TRUE(choice->fits);
  const int n_layer = static_cast<int>(shape->n_layer);
  const int fit_on_gpu = n_layer - static_cast<int>(fit_host_layers.size());
  const int ours_on_gpu = n_layer - static_cast<int>(choice->host_layers.size());
  EXPECT_GE(ours_on_gpu, fit_on_gpu) << "llama-fit-params: " << fitted_line << "\nagifarm: -ot "
                                     << choice->ot_rule;

  // llama.cpp's projection of agifarm's rule vs agifarm's estimate
  std::vector<std::string> check{test::llama_bin() + "/llama-fit-params", "--fit-print", "on", "-lv", "4"};
  check.insert(check.end(), base.begin(), base.end());
  check.insert(check.end(), {"-ot", choice->ot_rule});
  auto c = test::run(check, std::chrono::seconds(120));
  ASSERT_EQ(c.exit_code, 0) << c.output;
  auto theirs = device_rows(c.output);
  ASSERT_GE(theirs.size(), static_cast<std::size_t>(n_dev));
  std::ofstream report(test::work_dir() + fmt::format("/offload_vs_fit_{}.txt", n_dev));
  report << fmt::format(
      "devices {} target {} MiB: expert layers on GPU: llama-fit-params {} / agifarm {} of {}\n", n_dev,
      target_mib, fit_on_gpu, ours_on_gpu, n_layer);
  for (int i = 0; i < n_dev; ++i) {
    double ours = static_cast<double>(choice->estimate.devices[i].total_bytes) / k_mib;
    double ref = static_cast<double>(theirs[i].second);
    report << fmt::format("RPC{}: llama.cpp projects {:.0f} MiB, agifarm {:.0f} MiB ({:+.2f}%)\n", i, ref,
                          ours, 100 * (ours - ref) / ref);
    EXPECT_NEAR(ours, ref, 0.02 * ref) << "device " << i;
    EXPECT_LE(ours, static_cast<double>(rows[i].first - target_mib) + 1)
        << "agifarm's plan must respect the target";
  }
}

INSTANTIATE_TEST_SUITE_P(devices, offload_vs_fit, ::testing::Values(1, 2));

}  // namespace
}  // namespace agifarm::plan
