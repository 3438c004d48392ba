// The real OS implementations behind the supervisor's interfaces: fork/exec with process groups and
// PR_SET_PDEATHSIG, log files, ports, and the HTTP prober against a real (tiny) HTTP server.
// Waiting is always on a condition with a deadline.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "supervise/files.hpp"
#include "supervise/ports.hpp"
#include "supervise/prober.hpp"
#include "supervise/process.hpp"

namespace agifarm::supervise {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

template <class F>
bool wait_for(F cond, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);  // polling a condition, not waiting for time to pass
  }
  return cond();
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() /
           ("agifarm-supervise-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string file(const std::string& n) const { return (path / n).string(); }
};

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::optional<exit_info> wait_exit(posix_launcher& l, int pid, std::chrono::milliseconds deadline) {
  std::optional<exit_info> got;
  wait_for(
      [&] {
        for (auto& e : l.reap())
          if (e.pid == pid) got = e;
        return got.has_value();
      },
      deadline);
  return got;
}

TEST(posix_launcher, runs_argv_with_env_and_appends_output_to_the_log) {
  temp_dir d;
  posix_launcher l;
  auto log = d.file("x.log");
  auto pid =
      l.spawn({{"/bin/sh", "-c", "echo out $AGIFARM_T; echo err >&2; exit 3"}, {{"AGIFARM_T", "v1"}}, log});
  ASSERT_TRUE(pid.ok()) << pid.err().message;
  auto e = wait_exit(l, *pid, 10s);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->signaled);
  EXPECT_EQ(e->code, 3);
  EXPECT_EQ(e->describe(), "exit status 3");
  EXPECT_EQ(slurp(log), "out v1\nerr\n");
  // A second run appends.
  auto pid2 = l.spawn({{"/bin/sh", "-c", "echo again"}, {}, log});
  ASSERT_TRUE(pid2.ok());
  ASSERT_TRUE(wait_exit(l, *pid2, 10s));
  EXPECT_EQ(slurp(log), "out v1\nerr\nagain\n");
}

TEST(posix_launcher, exec_failure_is_an_error_naming_the_program) {
  temp_dir d;
  posix_launcher l;
  auto pid = l.spawn({{"/nonexistent/llama-server", "-m", "x"}, {}, d.file("x.log")});
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.err().message.find("/nonexistent/llama-server"), std::string::npos) << pid.err().message;
  EXPECT_NE(pid.err().message.find("No such file"), std::string::npos) << pid.err().message;
  EXPECT_TRUE(l.reap().empty());
}

TEST(posix_launcher, signal_group_reaches_the_backends_own_children) {
  temp_dir d;
  posix_launcher l;
  auto pidfile = d.file("grandchild.pid");
  auto pid =
      l.spawn({{"/bin/sh", "-c", "sleep 1000 & echo $! > " + pidfile + "; wait"}, {}, d.file("x.log")});
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(wait_for([&] { return !slurp(pidfile).empty(); }, 10s));
  int grandchild = std::stoi(slurp(pidfile));
  ASSERT_TRUE(process_alive(grandchild));
  EXPECT_EQ(::getpgid(grandchild), *pid) << "the backend is not the leader of its own process group";
  l.signal_group(*pid, SIGTERM);
  auto e = wait_exit(l, *pid, 10s);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->signaled);
  EXPECT_TRUE(wait_for([&] { return !process_alive(grandchild); }, 10s))
      << "grandchild " << grandchild << " survived";
}

TEST(posix_launcher, backends_die_when_the_supervisor_is_killed) {
  temp_dir d;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t sup = ::fork();
  ASSERT_GE(sup, 0);
  if (sup == 0) {  // a stand-in supervisor: spawn a backend, report its pid, wait to be killed
    ::close(fds[0]);
    posix_launcher l;
    auto pid = l.spawn({{"/bin/sleep", "1000"}, {}, d.file("x.log")});
    int v = pid.ok() ? *pid : -1;
    if (::write(fds[1], &v, sizeof v) != sizeof v) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(fds[1]);
  int backend = 0;
  ASSERT_EQ(::read(fds[0], &backend, sizeof backend), static_cast<ssize_t>(sizeof backend));
  ::close(fds[0]);
  ASSERT_GT(backend, 0);
  ASSERT_TRUE(process_alive(backend));
  EXPECT_NE(process_cmdline(backend).find("sleep 1000"), std::string::npos);
  ::kill(sup, SIGKILL);
  int st;
  ::waitpid(sup, &st, 0);
  EXPECT_TRUE(wait_for([&] { return !process_alive(backend); }, 10s)) << "backend outlived its supervisor";
}

TEST(real_files, tail_and_copytruncate_rotation) {
  temp_dir d;
  real_files f;
  auto log = d.file("b.log");
  for (int i = 0; i < 100; ++i) f.append_line(log, "line " + std::to_string(i));
  auto t = f.tail(log, 3);
  EXPECT_EQ(t, (std::vector<std::string>{"line 97", "line 98", "line 99"}));
  f.rotate_if_larger(log, 10'000, 2);  // smaller than the limit: nothing happens
  EXPECT_FALSE(fs::exists(log + ".1"));
  f.rotate_if_larger(log, 100, 2);
  EXPECT_EQ(fs::file_size(log), 0u);
  EXPECT_EQ(f.tail(log + ".1", 1), std::vector<std::string>{"line 99"});
  f.append_line(log, "after rotation");
  f.rotate_if_larger(log, 5, 2);
  EXPECT_EQ(f.tail(log + ".1", 1), std::vector<std::string>{"after rotation"});
  EXPECT_EQ(f.tail(log + ".2", 1), std::vector<std::string>{"line 99"});
  EXPECT_TRUE(f.tail(d.file("missing.log"), 5).empty());
}

TEST(real_files, write_atomic_and_read_back) {
  temp_dir d;
  ASSERT_TRUE(make_dirs(d.file("a/b")).ok());
  ASSERT_TRUE(write_file_atomic(d.file("a/b/s.json"), "{}").ok());
  auto r = read_file(d.file("a/b/s.json"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "{}");
  auto bad = write_file_atomic("/proc/nope/x", "1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.err().message.find("/proc/nope/x"), std::string::npos);
}

// A tiny HTTP server for the prober: handler(method, target) -> {status, body} or nullopt to hang.
class test_http_server {
 public:
  using handler =
      std::function<std::optional<std::pair<int, std::string>>(const std::string&, const std::string&)>;
  explicit test_http_server(handler h) : h_(std::move(h)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~test_http_server() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::lock_guard lk(mu_);
    for (int c : conns_) {
      ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
    for (int c : conns_) ::close(c);
  }
  int port() const { return port_; }

 private:
  void loop() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::lock_guard lk(mu_);
      conns_.push_back(c);
      workers_.emplace_back([this, c] { serve(c); });
    }
  }
  void serve(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    auto sp1 = req.find(' ');
    auto sp2 = req.find(' ', sp1 + 1);
    auto ans = h_(req.substr(0, sp1), req.substr(sp1 + 1, sp2 - sp1 - 1));
    if (!ans) {  // hang until the client gives up or the server stops
      while (::recv(c, buf, sizeof buf, 0) > 0) {
      }
      return;
    }
    std::string res = "HTTP/1.1 " + std::to_string(ans->first) +
                      " X\r\nContent-Length: " + std::to_string(ans->second.size()) +
                      "\r\nConnection: close\r\n\r\n" + ans->second;
    ::send(c, res.data(), res.size(), MSG_NOSIGNAL);
  }

  handler h_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
};

probe_result probe_once(http_prober& p, probe_kind k, int port, duration timeout) {
  static std::uint64_t tag = 0;
  p.start({"b", k, "127.0.0.1", port, timeout, ++tag});
  std::vector<probe_result> got;
  wait_for(
      [&] {
        auto r = p.poll();
        got.insert(got.end(), r.begin(), r.end());
        return !got.empty();
      },
      20s);
  EXPECT_EQ(got.size(), 1u);
  if (got.empty()) return {};
  EXPECT_EQ(got[0].tag, tag);
  return got[0];
}

TEST(http_prober, tells_ready_loading_refused_hung_and_busy_apart) {
  std::atomic<int> health_status{503};
  std::atomic<bool> slots_answer{true};
  test_http_server srv([&](const std::string& method,
                           const std::string& target) -> std::optional<std::pair<int, std::string>> {
    if (method == "GET" && target == "/health") return std::pair{health_status.load(), std::string("{}")};
    if (method == "GET" && target == "/slots") {
      if (slots_answer) return std::pair{200, std::string("[]")};
      return std::nullopt;
    }
    if (method == "POST" && target == "/completion") return std::nullopt;  // completions hang
    return std::pair{404, std::string()};
  });
  std::atomic<int> wakeups{0};
  http_prober p([&] { ++wakeups; });
  EXPECT_EQ(probe_once(p, probe_kind::health, srv.port(), 5s).outcome, probe_outcome::loading);
  health_status = 200;
  auto ok = probe_once(p, probe_kind::health, srv.port(), 5s);
  EXPECT_EQ(ok.outcome, probe_outcome::ok);
  EXPECT_EQ(ok.http_status, 200);
  health_status = 500;
  EXPECT_EQ(probe_once(p, probe_kind::health, srv.port(), 5s).outcome, probe_outcome::error);
  EXPECT_EQ(probe_once(p, probe_kind::tcp, srv.port(), 5s).outcome, probe_outcome::ok);
  // The completion hangs but the server's loop answers /slots: busy, not wedged.
  EXPECT_EQ(probe_once(p, probe_kind::completion, srv.port(), 300ms).outcome, probe_outcome::busy);
  slots_answer = false;
  auto hung = probe_once(p, probe_kind::completion, srv.port(), 300ms);
  EXPECT_EQ(hung.outcome, probe_outcome::timeout);
  EXPECT_GE(wakeups.load(), 6);

  real_ports ports;
  auto free_port = ports.allocate("127.0.0.1");
  ASSERT_TRUE(free_port.ok());
  EXPECT_EQ(probe_once(p, probe_kind::health, *free_port, 5s).outcome, probe_outcome::refused);
  EXPECT_EQ(probe_once(p, probe_kind::tcp, *free_port, 5s).outcome, probe_outcome::refused);
}

TEST(real_ports, allocate_gives_a_free_port_and_is_free_sees_a_listener) {
  real_ports ports;
  auto p = ports.allocate("127.0.0.1");
  ASSERT_TRUE(p.ok()) << p.err().message;
  EXPECT_GT(*p, 0);
  EXPECT_TRUE(ports.is_free("127.0.0.1", *p));
  test_http_server srv([](auto&, auto&) { return std::pair{200, std::string()}; });
  EXPECT_FALSE(ports.is_free("127.0.0.1", srv.port()));
  EXPECT_FALSE(ports.allocate("not-an-address").ok());
}

}  // namespace
}  // namespace agifarm::supervise
