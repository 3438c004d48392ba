#include "fit/fit.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "plan/devices.hpp"
#include "plan/server_args.hpp"
#include "supervise/files.hpp"

namespace agifarm::fit {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

std::string last_lines(const std::string& text, int n) {
  std::size_t pos = text.size();
  for (int i = 0; i < n && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
  }
  std::string tail = text.substr(pos);
  while (!tail.empty() && (tail.front() == '\n')) tail.erase(tail.begin());
  return tail;
}

// A process's log, "" when it cannot be read (the error then says what the tool said, if anything).
std::string slurp(const std::string& path) {
  auto text = supervise::read_file(path);
  return text ? std::move(text).value() : std::string();
}

int free_loopback_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io);
  boost::system::error_code ec;
  a.open(asio::ip::tcp::v4(), ec);
  if (ec) return 0;
  a.bind({asio::ip::make_address("127.0.0.1"), 0}, ec);
  if (ec) return 0;
  return a.local_endpoint().port();
}

bool port_answers(int port) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  return !ec;
}

// Every process this request started; stopped and reaped however the request ends.
class process_set {
 public:
  explicit process_set(supervise::process_launcher& l) : l_(l) {}
  ~process_set() {
    for (int pid : pids_) l_.signal_group(pid, SIGKILL);
    const auto until = clock_type::now() + std::chrono::seconds(5);
    while (!pids_.empty() && clock_type::now() < until) {
      collect();
      if (!pids_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  result<int> spawn(const supervise::spawn_request& r) {
    auto pid = l_.spawn(r);
    if (pid) pids_.push_back(*pid);
    return pid;
  }
  // Reaps what has exited; the exit of `pid` if it has.
  std::optional<supervise::exit_info> exited(int pid) {
    collect();
    for (auto it = exits_.begin(); it != exits_.end(); ++it)
      if (it->pid == pid) return *it;
    return std::nullopt;
  }

 private:
  void collect() {
    for (auto& e : l_.reap()) {
      exits_.push_back(e);
      pids_.erase(std::remove(pids_.begin(), pids_.end(), e.pid), pids_.end());
    }
  }
  supervise::process_launcher& l_;
  std::vector<int> pids_;
  std::vector<supervise::exit_info> exits_;
};

}  // namespace

result<fit_breakdown> ask_llama_fit(const fit_request& req, supervise::process_launcher& launcher) {
  const std::string fit_tool = req.llama_bin + "/llama-fit-params";
  const std::string rpc_tool = req.llama_bin + "/ggml-rpc-server";
  std::error_code ec;
  if (!fs::exists(fit_tool, ec))
    return make_error(fmt::format(
        "{} not found: a llama.cpp build with llama-fit-params is needed to ask llama.cpp", fit_tool));
  if (req.n_devices > 0 && !fs::exists(rpc_tool, ec))
    return make_error(fmt::format("{} not found: llama.cpp must be built with -DGGML_RPC=ON", rpc_tool));
  fs::create_directories(req.work_dir, ec);
  const auto deadline = clock_type::now() + req.timeout;
  process_set procs(launcher);

  std::string rpc_list;
  std::vector<std::pair<int, int>> rpc;  // pid, port
  for (int i = 0; i < req.n_devices; ++i) {
    const int port = free_loopback_port();
    if (port == 0) return make_error("no free port on 127.0.0.1 for a ggml-rpc-server");
    auto pid = procs.spawn({{rpc_tool, "-H", "127.0.0.1", "-p", std::to_string(port)},
                            {},
                            fmt::format("{}/rpc{}.log", req.work_dir, i)});
    if (!pid) return pid.err();
    rpc.emplace_back(*pid, port);
    rpc_list += fmt::format("{}127.0.0.1:{}", i ? "," : "", port);
  }
  for (std::size_t i = 0; i < rpc.size(); ++i) {
    while (!port_answers(rpc[i].second)) {
      if (auto e = procs.exited(rpc[i].first))
        return make_error(fmt::format("ggml-rpc-server {} stopped at start ({}):\n{}", i, e->describe(),
                                      last_lines(slurp(fmt::format("{}/rpc{}.log", req.work_dir, i)), 5)));
      if (clock_type::now() > deadline)
        return make_error(
            fmt::format("ggml-rpc-server {} did not listen on 127.0.0.1:{} in time", i, rpc[i].second));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::vector<std::string> argv{fit_tool, "--fit-print", "on", "-lv", "4"};
  argv.insert(argv.end(), req.server_args.begin(), req.server_args.end());
  if (!rpc_list.empty()) {
    argv.push_back("--rpc");
    argv.push_back(rpc_list);
  }
  const std::string log = req.work_dir + "/llama-fit-params.log";
  fs::remove(log, ec);
  auto pid = procs.spawn({argv, {}, log});
  if (!pid) return pid.err();
  std::optional<supervise::exit_info> done;
  while (!(done = procs.exited(*pid))) {
    if (clock_type::now() > deadline)
      return make_error(fmt::format("llama-fit-params did not finish in {} s:\n{}", req.timeout.count(),
                                    last_lines(slurp(log), 5)));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string out = slurp(log);
  if (done->signaled || done->code != 0)
    return make_error(fmt::format("llama-fit-params failed ({}):\n{}", done->describe(), last_lines(out, 8)));
  auto parsed = parse_fit_output(out, req.n_devices);
  if (!parsed) return make_error(fmt::format("{}\n{}", parsed.err().message, last_lines(out, 8)));
  return parsed;
}

std::string calibrate_compute(plan::model_shape& shape, const std::string& llama_bin,
                              const std::string& work_dir) {
  if (plan::replays_graph_exactly(shape.architecture)) return "";
  std::error_code ec;
  if (!fs::exists(llama_bin + "/llama-fit-params", ec))
    return fmt::format(
        "{}: no llama.cpp build at {} to measure '{}' compute buffers: they are a generic estimate",
        shape.name, llama_bin, shape.architecture);
  const std::vector<std::string> args{"-m", shape.file, "-c", "4096", "-np", "1", "-fa", "on", "-ngl", "999"};
  fit_request req;
  req.llama_bin = llama_bin;
  req.n_devices = 1;
  req.work_dir = work_dir.empty()
                     ? (fs::temp_directory_path() / fmt::format("agifarm-fit-{}", ::getpid())).string()
                     : work_dir;
  req.server_args = args;
  supervise::posix_launcher launcher;
  auto theirs = ask_llama_fit(req, launcher);
  if (work_dir.empty()) fs::remove_all(req.work_dir, ec);
  if (!theirs)
    return fmt::format("{}: asking llama.cpp for its compute buffers failed, they are a generic estimate: {}",
                       shape.name, theirs.err().message);
  auto sa = plan::parse_server_args(args);
  if (!sa) return "";
  sa->n_outputs_max = 0;
  auto mine = plan::estimate_memory(shape, *sa, plan::identical_devices(1, 1ull << 40));
  if (!mine) return "";
  auto ratio = [](std::uint64_t t, std::uint64_t o) {
    if (o == 0 || t == 0) return 0.0;
    return std::clamp(static_cast<double>(t) / static_cast<double>(o), 0.25, 4.0);
  };
  shape.compute_scale.device = ratio(theirs->devices[0].compute_bytes, mine->devices[0].compute_bytes);
  shape.compute_scale.host = ratio(theirs->host.compute_bytes, mine->host.compute_bytes);
  shape.compute_scale.source = "llama-fit-params";
  shape.warnings.erase(
      std::remove_if(shape.warnings.begin(), shape.warnings.end(),
                     [](const std::string& w) { return w.find("generic estimate") != std::string::npos; }),
      shape.warnings.end());
  return fmt::format(
      "{}: compute buffers of '{}' measured by llama.cpp (llama-fit-params, -c 4096 on one device): "
      "x{:.2f} on devices, x{:.2f} on the host over agifarm's generic graph",
      shape.name, shape.architecture, shape.compute_scale.device, shape.compute_scale.host);
}

}  // namespace agifarm::fit
