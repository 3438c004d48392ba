#include "support/netns_cluster.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "support/support.hpp"

namespace agifarm::test {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

run_result sh(const std::string& cmd, std::chrono::seconds timeout = 30s) {
  return run({"/bin/sh", "-c", cmd}, timeout);
}

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A /24 under 10.231.0.0/16 that no interface of this machine uses (tests may run in parallel).
int free_subnet() {
  auto used = sh("ip -4 -o addr show").output;
  for (int k = 0; k < 250; ++k) {
    int s = (static_cast<int>(::getpid()) + k * 7) % 250 + 1;
    if (used.find("10.231." + std::to_string(s) + ".") == std::string::npos) return s;
  }
  return 0;
}

}  // namespace

std::string netns_cluster::address(int i) const {
  return "10.231." + std::to_string(subnet_) + "." + std::to_string(i + 2);
}
std::string netns_cluster::controller_address() const { return "10.231." + std::to_string(subnet_) + ".1"; }
std::string netns_cluster::unused_address() const { return "10.231." + std::to_string(subnet_) + ".250"; }

std::unique_ptr<netns_cluster> netns_cluster::create(int nodes, std::string& error) {
  std::unique_ptr<netns_cluster> c(new netns_cluster());
  auto fail = [&](const std::string& what, const run_result& r) {
    error = what + " failed (exit " + std::to_string(r.exit_code) + "): " + r.output;
    return nullptr;
  };
  if (::geteuid() != 0) {
    error = "multi-node tests need root (ip netns, veth, bridge, sshd); CI runs as root";
    return nullptr;
  }
  if (!fs::exists("/usr/sbin/sshd")) {
    error = "/usr/sbin/sshd not found: scripts/setup.sh installs openssh-server";
    return nullptr;
  }
  c->subnet_ = free_subnet();
  const std::string tag = std::to_string(::getpid());
  c->dir_ = temp_dir("netns-" + tag);
  c->bridge_ = "agbr" + tag;
  const std::string d = c->dir_;
  std::string net = "10.231." + std::to_string(c->subnet_);
  if (auto r = sh("ip link add " + c->bridge_ + " type bridge && ip addr add " + net + ".1/24 dev " +
                  c->bridge_ + " && ip link set " + c->bridge_ + " up");
      r.exit_code != 0)
    return fail("making the bridge", r);
  if (auto r = sh("mkdir -p /run/sshd && chmod 0755 /run/sshd && ssh-keygen -q -t ed25519 -N '' -f " + d +
                  "/client_key && cp " + d + "/client_key.pub " + d + "/authorized_keys");
      r.exit_code != 0)
    return fail("making the client key", r);
  std::string known;
  for (int i = 0; i < nodes; ++i) {
    std::string ns = "ag" + tag + "n" + std::to_string(i);
    std::string veth = "agv" + tag + "n" + std::to_string(i);
    c->ns_.push_back(ns);
    c->veth_.push_back(veth);
    std::string addr = c->address(i);
    std::string cmd = "ip netns add " + ns + " && ip netns exec " + ns +
                      " ip link set lo up && ip link add " + veth + " type veth peer name " + veth +
                      "p && ip link set " + veth + "p netns " + ns + " && ip link set " + veth + " master " +
                      c->bridge_ + " && ip link set " + veth + " up" + " && ip netns exec " + ns +
                      " ip link set " + veth + "p name eth0" + " && ip netns exec " + ns + " ip addr add " +
                      addr + "/24 dev eth0" + " && ip netns exec " + ns + " ip link set eth0 up";
    if (auto r = sh(cmd); r.exit_code != 0) return fail("making node " + std::to_string(i), r);
    std::string key = d + "/host_key_" + std::to_string(i);
    if (auto r = sh("ssh-keygen -q -t ed25519 -N '' -f " + key); r.exit_code != 0) return fail("host key", r);
    known += addr + " " + slurp(key + ".pub");
    // Sessions get a HOME of their own: root's shell start-up files (pyenv's rehash lock, say) are this
    // machine's business, and a stale lock there costs every login 60 s.
    std::string home = d + "/home_" + std::to_string(i);
    fs::create_directories(home);
    std::ofstream(d + "/sshd_config_" + std::to_string(i))
        << "ListenAddress " << addr << "\nPort 22\nHostKey " << key << "\nPidFile " << d << "/sshd_" << i
        << ".pid\nAuthorizedKeysFile " << d << "/authorized_keys\nPermitRootLogin prohibit-password\n"
        << "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        << "MaxStartups 100\nMaxSessions 100\nLogLevel ERROR\nSetEnv HOME=" << home << "\n";
    // sshd -D stays in the foreground as a child of this process; -e logs to its log file.
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      std::string log = d + "/sshd_" + std::to_string(i) + ".log";
      FILE* f = std::freopen(log.c_str(), "w", stdout);
      (void)f;
      ::dup2(1, 2);
      ::execl("/usr/sbin/ip", "ip", "netns", "exec", ns.c_str(), "/usr/sbin/sshd", "-D", "-e", "-f",
              (d + "/sshd_config_" + std::to_string(i)).c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    c->sshd_.push_back(pid);
  }
  std::ofstream(d + "/known_hosts") << known;
  std::ofstream(d + "/ssh_config") << "Host *\n  User root\n  IdentityFile " << d
                                   << "/client_key\n  IdentitiesOnly yes\n"
                                   << "  UserKnownHostsFile " << d
                                   << "/known_hosts\n  GlobalKnownHostsFile /dev/null\n"
                                   << "  StrictHostKeyChecking yes\n";
  // Every sshd answers before the cluster is handed out.
  for (int i = 0; i < nodes; ++i) {
    bool ok = wait_until(
        [&] {
          return sh("ssh -F " + c->ssh_config() + " -o BatchMode=yes -o ConnectTimeout=2 " +
                        c->ssh_target(i) + " true",
                    10s)
                     .exit_code == 0;
        },
        90s, 300ms);  // a loaded machine's login shell can take seconds per ssh
    if (!ok) {
      auto r = sh("ssh -F " + c->ssh_config() + " -o BatchMode=yes -o ConnectTimeout=2 " + c->ssh_target(i) +
                  " true");
      return fail(
          "ssh to node " + std::to_string(i) + " (" + slurp(d + "/sshd_" + std::to_string(i) + ".log") + ")",
          r);
    }
  }
  return c;
}

std::string netns_cluster::ssh_config_with_wrong_key(int i) const {
  std::string other = dir_ + "/wrong_host_key_" + std::to_string(i);
  if (!fs::exists(other)) sh("ssh-keygen -q -t ed25519 -N '' -f " + other);
  std::string known = slurp(dir_ + "/known_hosts");
  std::string line_start = address(i) + " ";
  std::istringstream is(known);
  std::string out;
  for (std::string l; std::getline(is, l);)
    out += (l.rfind(line_start, 0) == 0 ? line_start + slurp(other + ".pub") : l + "\n");
  std::ofstream(dir_ + "/known_hosts_wrong_" + std::to_string(i)) << out;
  std::string cfg = dir_ + "/ssh_config_wrong_" + std::to_string(i);
  std::ofstream(cfg) << "Host *\n  User root\n  IdentityFile " << dir_
                     << "/client_key\n  IdentitiesOnly yes\n"
                     << "  UserKnownHostsFile " << dir_ << "/known_hosts_wrong_" << i
                     << "\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n";
  return cfg;
}

void netns_cluster::link(int i, bool up) const {
  sh("ip netns exec " + ns_[i] + " ip link set eth0 " + (up ? "up" : "down"));
}

std::vector<pid_t> netns_cluster::processes(int i) const {
  auto r = sh("ip netns pids " + ns_[i]);
  std::set<pid_t> sshd_tree;
  // sshd's own pid (the child of `ip netns exec`, which execs it in place): the listener.
  if (i < static_cast<int>(sshd_.size())) sshd_tree.insert(sshd_[i]);
  std::vector<pid_t> out;
  std::istringstream is(r.output);
  for (std::string l; std::getline(is, l);) {
    if (l.empty()) continue;
    pid_t p = static_cast<pid_t>(std::atoi(l.c_str()));
    if (sshd_tree.count(p)) continue;
    // Per-connection sshd processes of a session in progress are not the farm's.
    std::string comm = slurp("/proc/" + l + "/comm");
    if (comm.rfind("sshd", 0) == 0) continue;
    out.push_back(p);
  }
  return out;
}

void netns_cluster::kill_all(int i) const {
  for (pid_t p : processes(i)) ::kill(p, SIGKILL);
}

netns_cluster::~netns_cluster() {
  for (std::size_t i = 0; i < ns_.size(); ++i) {
    kill_all(static_cast<int>(i));
    if (i < sshd_.size() && sshd_[i] > 0) {
      ::kill(-sshd_[i], SIGKILL);
      ::kill(sshd_[i], SIGKILL);
    }
  }
  for (std::size_t i = 0; i < ns_.size(); ++i) {
    sh("ip netns del " + ns_[i] + " 2>/dev/null; ip link del " + veth_[i] + " 2>/dev/null; true");
  }
  if (!bridge_.empty()) sh("ip link del " + bridge_ + " 2>/dev/null; true");
  for (pid_t p : sshd_) {
    int st = 0;
    ::waitpid(p, &st, 0);
  }
}

}  // namespace agifarm::test
