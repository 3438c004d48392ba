// Integration: asking llama.cpp itself (real ggml-rpc-server + llama-fit-params processes on loopback)
// and `agifarm estimate --llama`. On Qwen3, whose graph agifarm replays, both answers agree; the
// processes started for the question are gone afterwards; a missing build is a clear error.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cmath>
#include <fstream>

#include "fit/fit.hpp"
#include "plan/devices.hpp"
#include "plan/memory_model.hpp"
#include "plan/server_args.hpp"
#include "support/support.hpp"

namespace agifarm::fit {
namespace {

namespace json = boost::json;
constexpr double k_mib = 1024.0 * 1024.0;

int children_of_this_process() {
  int n = 0;
  const std::string me = std::to_string(::getpid());
  if (DIR* d = ::opendir("/proc")) {
    while (auto* e = ::readdir(d)) {
      std::ifstream st(std::string("/proc/") + e->d_name + "/stat");
      std::string pid, comm, state, ppid;
      if (st >> pid >> comm >> state >> ppid && ppid == me) ++n;
    }
    ::closedir(d);
  }
  return n;
}

TEST(fit_llama, llama_cpp_and_the_replay_agree_on_qwen3_and_nothing_is_left_running) {
  const std::string model = test::tiny_model();
  fit_request req;
  req.llama_bin = test::llama_bin();
  req.n_devices = 2;
  req.work_dir = test::temp_dir("fit-ask");
  req.server_args = {"-m", model, "-c", "8192", "-np", "2"};
  supervise::posix_launcher launcher;
  auto theirs = ask_llama_fit(req, launcher);
  ASSERT_TRUE(theirs) << theirs.err().message;
  EXPECT_EQ(children_of_this_process(), 0);

  auto args = plan::parse_server_args(req.server_args);
  ASSERT_TRUE(args);
  args->n_outputs_max = 0;  // llama-fit-params' reservation
  auto shape = plan::load_model_shape(model);
  ASSERT_TRUE(shape);
  auto ours = plan::estimate_memory(*shape, *args, plan::identical_devices(2, 24ull << 30));
  ASSERT_TRUE(ours) << ours.err().message;
  auto close = [](std::uint64_t a, std::uint64_t b) {
    return std::fabs((double(a) - double(b)) / k_mib) <= 1.0;
  };
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(close(theirs->devices[i].model_bytes, ours->devices[i].model_bytes)) << i;
    EXPECT_TRUE(close(theirs->devices[i].context_bytes, ours->devices[i].context_bytes)) << i;
    EXPECT_TRUE(close(theirs->devices[i].compute_bytes, ours->devices[i].compute_bytes))
        << i << ": llama.cpp " << theirs->devices[i].compute_bytes / k_mib << " agifarm "
        << ours->devices[i].compute_bytes / k_mib;
  }
  EXPECT_GT(theirs->devices[0].context_bytes, 0u);
}

TEST(fit_llama, estimate_says_where_its_figures_come_from_and_a_missing_build_is_named) {
  const std::string model = test::tiny_model();
  auto asked = test::run({test::agifarm_cli(), "estimate", "--devices", "2", "--llama", "on", "--json", "--",
                          "-m", model, "-c", "8192", "-np", "2"});
  ASSERT_EQ(asked.exit_code, 0) << asked.output;
  auto v = json::parse(asked.output).as_object();
  EXPECT_EQ(v.at("source").as_string(), "llama-fit-params");
  EXPECT_TRUE(v.contains("agifarm"));
  EXPECT_GT(v.at("devices").as_array()[0].as_object().at("context_bytes").as_int64(), 0);

  // Qwen3's graph is replayed: auto does not need llama.cpp.
  auto replayed = test::run(
      {test::agifarm_cli(), "estimate", "--devices", "2", "--json", "--", "-m", model, "-c", "8192"});
  ASSERT_EQ(replayed.exit_code, 0) << replayed.output;
  EXPECT_EQ(json::parse(replayed.output).as_object().at("source").as_string(), "agifarm");

  auto missing = test::run({test::agifarm_cli(), "estimate", "--devices", "1", "--llama", "on", "--llama-bin",
                            "/nonexistent/llama", "--", "-m", model});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("/nonexistent/llama/llama-fit-params not found"), std::string::npos)
      << missing.output;

  auto bad =
      test::run({test::agifarm_cli(), "estimate", "--llama", "on", "--", "-m", model, "--no-such-flag"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--no-such-flag"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace agifarm::fit
