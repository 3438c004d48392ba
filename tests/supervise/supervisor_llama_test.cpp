// The supervisor with its real parts (fork/exec launcher, HTTP prober, files, ports) driving real
// ggml-rpc-server and llama-server processes: dependency order, readiness, 1-token probes, stop.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "supervise/supervisor.hpp"
#include "support/support.hpp"

namespace agifarm::supervise {
namespace {

using namespace std::chrono_literals;

// Counts probe results on their way to the supervisor.
class counting_prober final : public prober {
 public:
  void start(const probe_request& r) override { real_.start(r); }
  std::vector<probe_result> poll() override {
    auto v = real_.poll();
    for (auto& r : v) {
      if (r.kind == probe_kind::completion) {
        if (r.outcome == probe_outcome::ok)
          ++completion_ok;
        else
          ++completion_bad;
      }
    }
    return v;
  }
  int completion_ok = 0, completion_bad = 0;

 private:
  http_prober real_;
};

// Steps the supervisor until cond() holds or the deadline passes (polling; the supervisor never blocks).
template <class F>
bool drive(supervisor& s, F cond, std::chrono::seconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    auto next = s.step();
    if (cond()) return true;
    auto wait = std::min<std::chrono::steady_clock::duration>(next - std::chrono::steady_clock::now(), 20ms);
    if (wait > std::chrono::steady_clock::duration::zero()) std::this_thread::sleep_for(wait);
  }
  return cond();
}

TEST(supervisor_llama, rpc_server_first_then_llama_server_probed_then_stopped) {
  std::string dir = test::temp_dir("supervise-llama");
  std::string model = test::tiny_model();
  int rpc_port = test::free_port();
  plan::deployment d;
  plan::backend_spec rpc;
  rpc.name = "rpc0";
  rpc.kind = plan::backend_kind::rpc_server;
  rpc.port = rpc_port;
  plan::backend_spec llama;
  llama.name = "tiny";
  llama.model_file = model;
  llama.args = {"-m",   model, "-c",  "1024",  "-np",
                "1",    "-t",  "1",   "--rpc", "127.0.0.1:" + std::to_string(rpc_port),
                "-ngl", "99",  "-lv", "4"};
  llama.depends_on = {"rpc0"};
  d.backends = {llama, rpc};  // listed out of order on purpose
  supervisor_options o;
  o.llama_bin = test::llama_bin();
  o.log_dir = dir;
  o.probe_interval = 300ms;
  o.probe_timeout = 20s;
  o.health_interval_ready = 300ms;
  o.start_timeout = 120s;
  system_clock clk;
  posix_launcher launcher;
  counting_prober probes;
  real_files files;
  real_ports ports;
  std::vector<std::string> order;
  supervisor_events ev;
  ev.on_change = [&](const backend_status& b) {
    if (b.state == backend_state::starting) order.push_back(b.name);
  };
  supervisor s(d, o, clk, launcher, probes, files, ports, ev);
  ASSERT_TRUE(s.prepare().ok());
  auto get = [&](const std::string& n) -> const backend_status& {
    for (auto& b : s.backends())
      if (b.name == n) return b;
    throw std::runtime_error(n);
  };
  ASSERT_TRUE(drive(
      s, [&] { return s.all_settled(); }, 120s))
      << "rpc0: " << to_string(get("rpc0").state) << " tiny: " << to_string(get("tiny").state) << " "
      << get("tiny").reason;
  EXPECT_EQ(get("rpc0").state, backend_state::ready);
  ASSERT_EQ(get("tiny").state, backend_state::ready) << get("tiny").reason;
  EXPECT_EQ(order, (std::vector<std::string>{"rpc0", "tiny"}));
  // llama-server really uses the rpc server as a device.
  std::ifstream log(get("tiny").log_path);
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("RPC0"), std::string::npos) << "llama-server did not use the rpc server";
  // 1-token completion probes answer on a healthy server.
  ASSERT_TRUE(drive(
      s, [&] { return probes.completion_ok >= 3; }, 60s));
  EXPECT_EQ(probes.completion_bad, 0);
  EXPECT_EQ(get("tiny").restarts, 0);
  int pids[2] = {get("rpc0").pid, get("tiny").pid};
  s.stop_all();
  ASSERT_TRUE(drive(
      s, [&] { return s.all_stopped(); }, 60s));
  for (int pid : pids) EXPECT_FALSE(process_alive(pid)) << pid;
  EXPECT_EQ(get("tiny").state, backend_state::stopped);
}

}  // namespace
}  // namespace agifarm::supervise
