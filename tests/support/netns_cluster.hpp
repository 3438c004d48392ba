// netns_cluster: "several machines" on one box for multi-node tests. Each node is a Linux network
// namespace joined to a bridge in the root namespace, with its own address (10.231.S.2, .3, ...; the
// root namespace, where the controller runs, is 10.231.S.1) and its own sshd (Debian openssh-server)
// with a generated host key, accepting a generated client key for root. An ssh_config (-F) names the
// client key and a known_hosts file with the nodes' real host keys (StrictHostKeyChecking yes).
//
// Needs root (ip netns, veth, bridge); create() returns an error saying what failed otherwise. Traffic
// stays on the bridge: no route leaves it. The destructor kills every process left in the namespaces
// and removes them, the veths and the bridge. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace agifarm::test {

class netns_cluster {
 public:
  // nodes: how many machines. error: why it could not be made (empty on success).
  static std::unique_ptr<netns_cluster> create(int nodes, std::string& error);
  ~netns_cluster();
  netns_cluster(const netns_cluster&) = delete;
  netns_cluster& operator=(const netns_cluster&) = delete;

  int size() const { return static_cast<int>(ns_.size()); }
  std::string ns(int i) const { return ns_[i]; }
  std::string address(int i) const;        // the node's address on the bridge
  std::string controller_address() const;  // the root namespace's address on the bridge
  std::string unused_address() const;      // an address on the bridge where no node answers
  std::string ssh_target(int i) const { return "root@" + address(i); }
  std::string ssh_config() const { return dir_ + "/ssh_config"; }  // for ssh -F
  // An ssh_config whose known_hosts has a wrong key for node i (the host-key check must refuse it).
  std::string ssh_config_with_wrong_key(int i) const;
  std::string dir() const { return dir_; }

  // Cuts (or restores) node i's link to the bridge, as a pulled cable or a dead switch port would.
  void link(int i, bool up) const;
  // Pids of the processes in node i's namespace, sshd excluded.
  std::vector<pid_t> processes(int i) const;
  // Kills (SIGKILL) every process of node i but its sshd: the machine "crashed" and came back.
  void kill_all(int i) const;

 private:
  netns_cluster() = default;
  std::string dir_;
  std::string bridge_;
  int subnet_ = 0;
  std::vector<std::string> ns_, veth_;
  std::vector<pid_t> sshd_;
};

}  // namespace agifarm::test
