#include "support/support.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace agifarm::test {
namespace fs = std::filesystem;

std::string llama_bin() {
  if (const char* e = std::getenv("AGIFARM_LLAMA_BIN")) return e;
  return AGIFARM_LLAMA_BIN;
}
std::string llama_src() { return AGIFARM_LLAMA_SRC; }
std::string agifarm_cli() { return AGIFARM_CLI; }
std::string work_dir() {
  std::string d = std::string(AGIFARM_BINARY_DIR) + "/test-work";
  fs::create_directories(d);
  return d;
}
std::string temp_dir(const std::string& name) {
  std::string d = work_dir() + "/" + name + "-" + std::to_string(::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string tiny_model(const std::string& arch, const std::vector<std::string>& extra) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::string tag = arch;
  for (const auto& f : extra) tag += f;
  for (auto& c : tag)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  std::string path = work_dir() + "/models/tiny-" + tag + ".gguf";
  if (fs::exists(path)) return path;
  fs::create_directories(work_dir() + "/models");
  std::vector<std::string> argv{agifarm_cli(), "synth", "tiny", "--arch", arch, "-o", path};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = run(argv);
  if (r.exit_code != 0) throw std::runtime_error("agifarm synth tiny failed: " + r.output);
  return path;
}

run_result run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  std::string log = work_dir() + "/run-" + std::to_string(::getpid()) + "-" +
                    std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".log";
  child c(argv, log);
  run_result r;
  auto st = c.wait_exit(timeout);
  r.output = c.log();
  fs::remove(log);
  r.exit_code = st ? *st : -1;
  if (!st) r.output += "\n[timed out]";
  return r;
}

child::child(const std::vector<std::string>& argv, const std::string& log_path) : log_(log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (pid_ > 0) ::setpgid(pid_, pid_);
}
child::child(child&& o) noexcept : pid_(o.pid_), log_(std::move(o.log_)), status_(o.status_) { o.pid_ = -1; }
child& child::operator=(child&& o) noexcept {
  if (this != &o) {
    this->~child();
    pid_ = o.pid_;
    log_ = std::move(o.log_);
    status_ = o.status_;
    o.pid_ = -1;
  }
  return *this;
}
child::~child() {
  if (pid_ > 0 && !status_) {
    ::kill(-pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  pid_ = -1;
}
bool child::running() {
  if (pid_ <= 0 || status_) return false;
  int st;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}
void child::kill(int sig) {
  if (pid_ > 0 && !status_) ::kill(-pid_, sig);
}
std::optional<int> child::wait_exit(std::chrono::milliseconds timeout) {
  wait_until([&] { return !running(); }, timeout, std::chrono::milliseconds(10));
  return status_;
}
std::string child::log() const {
  std::ifstream f(log_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool port_open(int port) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  return !ec;
}

int listen_on(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

http_response http_request(int port, const std::string& method, const std::string& target,
                           const std::string& body,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::chrono::milliseconds timeout) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  http_response out;
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                                  static_cast<unsigned short>(port)));
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(512 * 1024 * 1024);
    http::read(stream, buf, parser);
    auto& res = parser.get();
    out.status = static_cast<int>(res.result_int());
    out.body = res.body();
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    beast::error_code ec;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  } catch (const std::exception& e) {
    out.status = 0;
    out.body = e.what();
  }
  return out;
}

llama_server start_llama_server(const std::string& model, const std::vector<std::string>& extra,
                                std::chrono::seconds ready) {
  llama_server s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s.port = free_port();
    std::vector<std::string> argv{llama_bin() + "/llama-server", "-m", model, "--host", "127.0.0.1", "--port",
                                  std::to_string(s.port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    s.proc = child(argv, temp_dir("llama-server-" + std::to_string(s.port)) + "/server.log");
    bool ok = wait_until(
        [&] {
          return !s.proc.running() ||
                 http_request(s.port, "GET", "/health", {}, {}, std::chrono::seconds(2)).status == 200;
        },
        ready);
    if (ok && s.proc.running()) return s;
    if (s.proc.running()) throw std::runtime_error("llama-server not ready in time:\n" + s.proc.log());
    // exited: maybe the port was taken between free_port() and bind; retry
  }
  throw std::runtime_error("llama-server failed to start:\n" + s.proc.log());
}

}  // namespace agifarm::test
