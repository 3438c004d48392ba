// The inventory file: the examples in docs/examples, every field, link lookups, and bad input with
// file:line:column.
#include <boost/json.hpp>

#include "hw_test_util.hpp"

namespace agifarm::hw {
namespace {

using test::k_gib;
using test::real_catalogue;

result<inventory> example(const std::string& name) {
  return load_inventory(std::string(AGIFARM_SOURCE_DIR) + "/docs/examples/" + name, real_catalogue());
}

result<inventory> parse(const std::string& text) {
  return parse_inventory(text, "inv.yaml", real_catalogue());
}

// Asserts that `text` fails with a message starting "inv.yaml:LINE:COL: " and containing `needle`.
void expect_error(const std::string& text, const std::string& where, const std::string& needle) {
  auto r = parse(text);
  ASSERT_FALSE(r) << "accepted:\n" << text;
  EXPECT_EQ(r.err().message.rfind("inv.yaml:" + where + ": ", 0), 0u) << r.err().message;
  EXPECT_NE(r.err().message.find(needle), std::string::npos) << r.err().message;
  EXPECT_EQ(r.err().exit_code, 2);
}

TEST(hw_inventory, OneGpuExample) {
  auto r = example("one-gpu.yaml");
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->nodes.size(), 1u);
  const node& n = r->nodes[0];
  EXPECT_EQ(n.name, "desk");
  EXPECT_EQ(n.address, "127.0.0.1");
  EXPECT_EQ(n.cpu_cores, 16);
  EXPECT_EQ(n.cpu_threads, 32);
  EXPECT_EQ(n.ram_bytes, static_cast<std::uint64_t>(64 * k_gib));
  EXPECT_DOUBLE_EQ(n.ram_bandwidth_bytes_per_s, 70e9);
  EXPECT_EQ(n.ram_bandwidth_source, "declared");
  ASSERT_EQ(n.gpus.size(), 1u);
  EXPECT_EQ(n.gpus[0].catalogue_id, "rtx4090");
  EXPECT_EQ(n.gpus[0].free_vram_bytes, n.gpus[0].vram_bytes);
  EXPECT_DOUBLE_EQ(n.gpus[0].bandwidth_bytes_per_s, 1008e9);
  EXPECT_EQ(r->gpu_count(), 1);
}

TEST(hw_inventory, TwoRtx3090WithNvlink) {
  auto r = example("two-3090.yaml");
  ASSERT_TRUE(r) << r.err().message;
  const node& n = r->nodes.at(0);
  ASSERT_EQ(n.gpus.size(), 2u);
  EXPECT_EQ(n.gpus[1].index, 1);
  EXPECT_EQ(n.gpus[1].pcie_lanes, 8);  // node-level pcie applies to all its GPUs
  link l = r->between_gpus("box", 0, 1);
  EXPECT_EQ(l.kind, link_kind::nvlink);
  EXPECT_DOUBLE_EQ(l.bandwidth_bytes_per_s, 56.25e9);
  link l2 = r->between_gpus("box", 1, 0);
  EXPECT_EQ(l2.kind, link_kind::nvlink);
}

TEST(hw_inventory, EightGpusWithRisers) {
  auto r = example("eight-gpu.yaml");
  ASSERT_TRUE(r) << r.err().message;
  const node& n = r->nodes.at(0);
  ASSERT_EQ(n.gpus.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(n.gpus[static_cast<std::size_t>(i)].index, i);
  EXPECT_EQ(n.gpus[3].free_vram_bytes, static_cast<std::uint64_t>(23 * k_gib));
  EXPECT_EQ(n.gpus[4].pcie_gen, 3);
  EXPECT_EQ(n.gpus[4].pcie_lanes, 4);
  // Two GPUs talk through the host at the slower one's link.
  link fast = r->between_gpus("rig", 0, 1);
  EXPECT_EQ(fast.kind, link_kind::pcie);
  EXPECT_DOUBLE_EQ(fast.bandwidth_bytes_per_s, pcie_bandwidth_bytes_per_s(4, 16));
  link slow = r->between_gpus("rig", 0, 7);
  EXPECT_DOUBLE_EQ(slow.bandwidth_bytes_per_s, pcie_bandwidth_bytes_per_s(3, 4));
  EXPECT_EQ(slow.pcie_gen, 3);
  // one pcie link per GPU is listed
  int pcie = 0;
  for (const auto& l : r->links) pcie += l.kind == link_kind::pcie;
  EXPECT_EQ(pcie, 8);
}

TEST(hw_inventory, ThreeNodesAndTheirLinks) {
  auto r = example("three-nodes.yaml");
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->nodes.size(), 3u);
  EXPECT_EQ(r->gpu_count(), 6);
  const node* work = r->find_node("work");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->gpus[1].name, "RTX 4060 Ti 16GB");
  EXPECT_TRUE(work->gpus[1].catalogue_id.empty());
  EXPECT_EQ(work->gpus[1].vram_bytes, static_cast<std::uint64_t>(16 * k_gib));
  EXPECT_DOUBLE_EQ(work->gpus[1].fp16_tflops, 88);
  const node* old = r->find_node("old");
  EXPECT_EQ(old->ram_bandwidth_source, "catalogue");
  EXPECT_DOUBLE_EQ(old->ram_bandwidth_bytes_per_s, real_catalogue().cpu.ram_bandwidth_bytes_per_s);

  link bw = r->between("work", "big");  // either order
  EXPECT_EQ(bw.kind, link_kind::ethernet);
  EXPECT_DOUBLE_EQ(bw.gbit_per_s(), 10);
  EXPECT_DOUBLE_EQ(bw.latency_s, 0.1e-3);
  link bo = r->between("big", "old");
  EXPECT_DOUBLE_EQ(bo.gbit_per_s(), 2.5);
  EXPECT_DOUBLE_EQ(bo.latency_s, 0.3e-3);  // inherits default_link's latency
  link wo = r->between("work", "old");     // undeclared: the file's default
  EXPECT_DOUBLE_EQ(wo.gbit_per_s(), 1);
  EXPECT_EQ(wo.node_a, "work");
  EXPECT_EQ(wo.node_b, "old");
  link self = r->between("big", "big");
  EXPECT_DOUBLE_EQ(self.bandwidth_bytes_per_s, k_loopback_bandwidth_bytes_per_s);
}

TEST(hw_inventory, CpuOnlyExample) {
  auto r = example("cpu-only.yaml");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->gpu_count(), 0);
  EXPECT_TRUE(r->nodes[0].gpus.empty());
}

TEST(hw_inventory, DefaultsWithoutDeclarations) {
  auto r = parse("nodes:\n  - name: a\n    ram_gb: 16\n  - name: b\n    ram_gb: 16\n");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->nodes[0].address, "a");  // the name doubles as host name
  link l = r->between("a", "b");
  EXPECT_DOUBLE_EQ(l.gbit_per_s(), k_default_ethernet_gbit);
  EXPECT_DOUBLE_EQ(l.latency_s, k_default_ethernet_latency_s);
  link g = r->between_gpus("a", 0, 1);  // no such GPUs: a default gen4 x16 path, not a crash
  EXPECT_EQ(g.kind, link_kind::pcie);
  EXPECT_DOUBLE_EQ(g.bandwidth_bytes_per_s, pcie_bandwidth_bytes_per_s(4, 16));
}

TEST(hw_inventory, ExplicitFiguresOverrideTheCatalogue) {
  auto r = parse(
      "nodes:\n  - name: a\n    ram_gb: 16\n    gpus:\n"
      "      - {model: rtx3090, vram_gb: 22, bandwidth_gbs: 800, tflops: 100, name: 'my 3090', pcie: {gen: "
      "3}}\n");
  ASSERT_TRUE(r) << r.err().message;
  const gpu& g = r->nodes[0].gpus[0];
  EXPECT_EQ(g.catalogue_id, "rtx3090");
  EXPECT_EQ(g.name, "my 3090");
  EXPECT_EQ(g.vram_bytes, static_cast<std::uint64_t>(22 * k_gib));
  EXPECT_DOUBLE_EQ(g.bandwidth_bytes_per_s, 800e9);
  EXPECT_DOUBLE_EQ(g.fp16_tflops, 100);
  EXPECT_EQ(g.pcie_gen, 3);
  EXPECT_EQ(g.pcie_lanes, 16);
}

TEST(hw_inventory, UnknownGpuSuggestsNearest) {
  expect_error("nodes:\n  - name: a\n    ram_gb: 16\n    gpus:\n      - model: rtx3060\n", "5:16",
               "key 'model': unknown GPU 'rtx3060'; nearest in the catalogue");
  auto r = parse("nodes:\n  - name: a\n    ram_gb: 16\n    gpus:\n      - model: rtx3060\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().message.find("rtx3090"), std::string::npos) << r.err().message;
  auto h = parse("nodes:\n  - name: a\n    ram_gb: 16\n    gpus:\n      - model: h100\n");
  ASSERT_FALSE(h);
  EXPECT_NE(h.err().message.find("h100-sxm"), std::string::npos) << h.err().message;
  EXPECT_NE(h.err().message.find("h100-pcie"), std::string::npos) << h.err().message;
}

TEST(hw_inventory, ErrorsNameFileLineColumnAndKey) {
  expect_error("nodes:\n  - name: a\n", "2:5", "key 'ram_gb': must be a number");
  expect_error("nodes:\n  - name: a\n    ram_gb: lots\n", "3:13", "key 'ram_gb': 'lots' is not a number");
  expect_error("nodes:\n  - name: a\n    ram_gb: -4\n", "3:13", "key 'ram_gb': -4 is out of range");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    rma_gb: 8\n", "4:5",
               "key 'rma_gb': unknown key in a node");
  expect_error("nodes:\n  - name: a b\n    ram_gb: 8\n", "2:11", "key 'name': 'a b' is not a node name");
  expect_error("nodes:\n  - {name: a, ram_gb: 8}\n  - {name: a, ram_gb: 8}\n", "3:12",
               "node 'a' is defined twice");
  expect_error("nodes: []\n", "1:8", "key 'nodes': must be a non-empty list");
  expect_error("node:\n  - name: a\n", "1:1", "key 'node': unknown key in the inventory");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    gpus:\n      - {vram_gb: 8, bandwidth_gbs: 100}\n",
               "5:9", "key 'tflops': missing");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    gpus:\n      - {model: rtx3090, count: 0}\n", "5:33",
               "key 'count': 0 is out of range");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    gpus:\n      - {model: rtx3090, count: 1.5}\n",
               "5:33", "key 'count': '1.5' must be a whole number");
  expect_error(
      "nodes:\n  - name: a\n    ram_gb: 8\n    gpus:\n      - {model: rtx3090, pcie: {gen: 4, lanes: 3}}\n",
      "5:48", "key 'lanes': 3 is not a PCIe width");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    gpus:\n      - {model: rtx3090, free_vram_gb: 30}\n",
               "5:40", "key 'free_vram_gb': is more than vram_gb");
  expect_error(
      "nodes:\n  - name: a\n    ram_gb: 8\n    gpus: [{model: rtx3090}]\n    nvlink:\n      - {gpus: [0, 1], "
      "bandwidth_gbs: 50}\n",
      "6:20", "key 'gpus': GPU 1 does not exist on node 'a' (it has 1)");
  expect_error(
      "nodes:\n  - name: a\n    ram_gb: 8\n    gpus: [{model: rtx3090, count: 2}]\n    nvlink:\n      - "
      "{gpus: "
      "[0, 1]}\n",
      "6:9", "key 'bandwidth_gbs': must be a number");
  expect_error("nodes:\n  - {name: a, ram_gb: 8}\nlinks:\n  - {between: [a, c], ethernet_gbits: 10}\n",
               "4:19", "key 'between': no node named 'c'");
  expect_error("nodes:\n  - {name: a, ram_gb: 8}\nlinks:\n  - {between: [a, a], ethernet_gbits: 10}\n",
               "4:15", "a link joins two different nodes");
  expect_error(
      "nodes:\n  - {name: a, ram_gb: 8}\n  - {name: b, ram_gb: 8}\nlinks:\n  - {between: [a, b], "
      "ethernet_gbits: 10}\n  - {between: [b, a], ethernet_gbits: 1}\n",
      "6:15", "declared twice");
  expect_error("nodes:\n  - {name: a, ram_gb: 8}\nlinks:\n  - {between: [a], ethernet_gbits: 10}\n", "4:15",
               "must name two nodes");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    cpu: {cores: 8, threads: 4}\n", "4:30",
               "key 'threads': is less than cores");
}

TEST(hw_inventory, RemoteNodeKeys) {
  auto r = parse(
      "nodes:\n"
      "  - name: a\n"
      "    ssh: root@10.0.0.2:2222\n"
      "    agifarm: /opt/agifarm/bin/agifarm\n"
      "    llama_bin: /opt/llama.cpp/build/bin\n"
      "    state_dir: /var/lib/agifarm\n"
      "    ram_gb: 16\n"
      "  - name: b\n"
      "    ssh: gpu@b.lan\n"
      "    address: 192.168.7.2\n"
      "    ram_gb: 16\n"
      "  - name: c\n"
      "    ssh: c.lan\n"
      "    ram_gb: 16\n"
      "  - name: here\n"
      "    ram_gb: 16\n");
  ASSERT_TRUE(r) << r.err().message;
  const node& a = r->nodes[0];
  EXPECT_EQ(a.ssh, "root@10.0.0.2:2222");
  EXPECT_EQ(a.address, "10.0.0.2");  // no address: the ssh target's host, not the name
  EXPECT_EQ(a.agifarm_path, "/opt/agifarm/bin/agifarm");
  EXPECT_EQ(a.llama_bin, "/opt/llama.cpp/build/bin");
  EXPECT_EQ(a.state_dir, "/var/lib/agifarm");
  EXPECT_EQ(r->nodes[1].address, "192.168.7.2");  // a declared address wins
  EXPECT_EQ(r->nodes[2].address, "c.lan");
  EXPECT_TRUE(r->nodes[2].agifarm_path.empty());
  const node& here = r->nodes[3];
  EXPECT_TRUE(here.ssh.empty());
  EXPECT_EQ(here.address, "here");  // without ssh the name stays the default

  auto j = to_json(*r);
  const auto& ja = j.at("nodes").as_array()[0].as_object();
  EXPECT_EQ(ja.at("ssh").as_string(), "root@10.0.0.2:2222");
  EXPECT_EQ(ja.at("agifarm").as_string(), "/opt/agifarm/bin/agifarm");
  EXPECT_EQ(ja.at("llama_bin").as_string(), "/opt/llama.cpp/build/bin");
  EXPECT_EQ(ja.at("state_dir").as_string(), "/var/lib/agifarm");
  const auto& jh = j.at("nodes").as_array()[3].as_object();
  for (const char* k : {"ssh", "agifarm", "llama_bin", "state_dir"}) EXPECT_FALSE(jh.contains(k)) << k;

  std::string table = format_table(*r);
  EXPECT_NE(table.find("node a (10.0.0.2)\n  ssh   root@10.0.0.2:2222\n"), std::string::npos) << table;
  EXPECT_EQ(table.find("node here (here)\n  ssh"), std::string::npos) << table;
}

TEST(hw_inventory, RemoteNodeKeyErrors) {
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    ssh: 'root@'\n", "4:10",
               "key 'ssh': ssh target 'root@': empty host");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    ssh: h:99999\n", "4:10",
               "key 'ssh': ssh target 'h:99999': port '99999' is not 1-65535");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    ssh: -oProxyCommand=x\n", "4:10",
               "key 'ssh': ssh target '-oProxyCommand=x': a host may not start with '-'");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    ssh: 'a b@c'\n", "4:10",
               "key 'ssh': ssh target 'a b@c'");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    ssh: [h]\n", "4:10", "key 'ssh': must be a string");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    agifarm: ''\n", "4:14", "key 'agifarm': is empty");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    llama_bin: {x: 1}\n", "4:16",
               "key 'llama_bin': must be a string");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    state_dir: \"/x\\ny\"\n", "4:16",
               "key 'state_dir': has a control character");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    address: ''\n", "4:14", "key 'address': is empty");
  expect_error("nodes:\n  - name: a\n    ram_gb: 8\n    sshh: h\n", "4:5",
               "key 'sshh': unknown key in a node");
  // Two nodes may not share a name, with or without ssh.
  expect_error("nodes:\n  - {name: a, ssh: h1, ram_gb: 8}\n  - {name: a, ssh: h2, ram_gb: 8}\n", "3:12",
               "node 'a' is defined twice");
}

TEST(hw_inventory, SyntaxErrorsNameLineAndColumn) {
  auto r = parse("nodes:\n  - name: a\n    ram_gb: [8\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().message.rfind("inv.yaml:", 0), 0u) << r.err().message;
  EXPECT_EQ(r.err().exit_code, 2);
  auto e = parse("");
  ASSERT_FALSE(e);
  EXPECT_NE(e.err().message.find("empty"), std::string::npos) << e.err().message;
  auto scalar = parse("just text\n");
  ASSERT_FALSE(scalar);
  EXPECT_NE(scalar.err().message.find("inv.yaml:1:1"), std::string::npos) << scalar.err().message;
}

TEST(hw_inventory, MissingFileIsAnError) {
  auto r = load_inventory("/nonexistent/inv.yaml", real_catalogue());
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().message.find("/nonexistent/inv.yaml"), std::string::npos);
  EXPECT_EQ(r.err().exit_code, 2);
}

TEST(hw_inventory, JsonCarriesEveryNodeGpuAndLink) {
  auto r = example("three-nodes.yaml");
  ASSERT_TRUE(r) << r.err().message;
  auto j = to_json(*r);
  ASSERT_EQ(j.at("nodes").as_array().size(), 3u);
  const auto& big = j.at("nodes").as_array()[0].as_object();
  EXPECT_EQ(big.at("name").as_string(), "big");
  EXPECT_EQ(big.at("gpus").as_array().size(), 3u);
  EXPECT_EQ(big.at("gpus").as_array()[0].as_object().at("catalogue_id").as_string(), "rtxpro6000");
  EXPECT_EQ(j.at("gpu_count").as_int64(), 6);
  int ethernet = 0;
  for (const auto& l : j.at("links").as_array())
    ethernet += l.as_object().at("kind").as_string() == "ethernet";
  EXPECT_EQ(ethernet, 2);
  std::string table = format_table(*r);
  EXPECT_NE(table.find("node work"), std::string::npos);
  EXPECT_NE(table.find("ethernet big <-> work: 10 Gbit/s"), std::string::npos) << table;
}

}  // namespace
}  // namespace agifarm::hw
