// `agifarm hw --ssh` without ssh: a fake remote_shell answers `uname -n` and `agifarm hw --json` per
// target; the YAML written is parsed back with parse_inventory. Errors name the target.
#include "hw/remote_inventory.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <map>
#include <mutex>

#include "hw_test_util.hpp"

namespace agifarm::hw {
namespace {

using remote::command_output;
using test::k_gib;
using test::real_catalogue;

// What `agifarm hw --json` prints for a discovered node (as cmd_hw.cpp writes it).
std::string hw_json(const node& n) {
  boost::json::object o = to_json(local_inventory(n));
  o["notes"] = boost::json::array{};
  o["catalogue"] = "/usr/share/agifarm/gpus.yaml";
  return boost::json::serialize(o) + "\n";
}

gpu catalogue_gpu(const std::string& id, int index) {
  const gpu_spec* s = real_catalogue().find(id);
  EXPECT_NE(s, nullptr) << id;
  gpu g;
  g.name = s->display_name;
  g.catalogue_id = s->id;
  g.vendor = s->vendor;
  g.index = index;
  g.vram_bytes = g.free_vram_bytes = s->vram_bytes;
  g.bandwidth_bytes_per_s = s->bandwidth_bytes_per_s;
  g.fp16_tflops = s->fp16_tflops;
  g.pcie_gen = s->pcie_gen;
  g.pcie_lanes = s->pcie_lanes;
  return g;
}

node discovered(int cores, double ram_gib, std::vector<gpu> gpus = {}) {
  node n;  // name "local", address 127.0.0.1, as discovery leaves them
  n.cpu_model = "AMD EPYC 7543 32-Core Processor";
  n.cpu_cores = cores;
  n.cpu_threads = cores * 2;
  n.cpu_peak_flops = 1e12;
  n.ram_bytes = static_cast<std::uint64_t>(ram_gib * k_gib);
  n.ram_free_bytes = n.ram_bytes / 2;
  n.ram_bandwidth_bytes_per_s = 34.56e9;
  n.ram_bandwidth_source = "measured";
  n.gpus = std::move(gpus);
  return n;
}

// Answers by target (its text()) and by the command's first word. Thread-safe: the orchestration asks
// targets from several threads.
struct fake_shell : remote::remote_shell {
  struct machine {
    std::string hostname;
    result<command_output> hw = command_output{};
    result<command_output> uname = command_output{};  // exit_code 0 and out "" means: use hostname
  };
  std::map<std::string, machine> machines;
  std::mutex m;
  std::vector<std::pair<std::string, std::vector<std::string>>> calls;

  void add(const std::string& target, const std::string& hostname, const std::string& json) {
    machine x;
    x.hostname = hostname;
    x.hw = command_output{0, json, ""};
    machines[target] = std::move(x);
  }
  result<command_output> run(const remote::ssh_target& t, const std::vector<std::string>& argv,
                             std::string_view, std::chrono::milliseconds) override {
    std::lock_guard lock(m);
    calls.emplace_back(t.text(), argv);
    auto it = machines.find(t.text());
    if (it == machines.end())
      return make_error(fmt::format("ssh {}: connection refused (is sshd running there?)", t.text()));
    if (argv.at(0) == "uname") {
      if (!it->second.uname) return it->second.uname.err();
      if (it->second.uname->exit_code || !it->second.uname->out.empty()) return *it->second.uname;
      return command_output{0, it->second.hostname + "\n", ""};
    }
    return it->second.hw;
  }
  std::vector<std::vector<std::string>> calls_to(const std::string& target) {
    std::vector<std::vector<std::string>> r;
    for (const auto& [t, argv] : calls)
      if (t == target) r.push_back(argv);
    return r;
  }
};

result<inventory> parse_back(const std::string& yaml) {
  return parse_inventory(yaml, "out.yaml", real_catalogue());
}

TEST(hw_remote_inventory, TwoMachinesRoundTripThroughTheParser) {
  gpu riser = catalogue_gpu("rtx3090", 1);
  riser.pcie_gen = 3;
  riser.pcie_lanes = 4;
  gpu custom;  // not in this catalogue: its figures come from the remote's discovery
  custom.name = "Tesla T4";
  custom.vendor = gpu_vendor::nvidia;
  custom.vram_bytes = custom.free_vram_bytes = 15360ull * 1024 * 1024;
  custom.bandwidth_bytes_per_s = 320e9;
  custom.fp16_tflops = 65;
  custom.pcie_gen = 3;
  custom.pcie_lanes = 16;
  fake_shell sh;
  sh.add("root@10.0.0.2", "big", hw_json(discovered(32, 251.5, {catalogue_gpu("rtx3090", 0), riser})));
  sh.add("gpu@b.lan:2222", "small", hw_json(discovered(8, 31.25, {custom})));

  remote_inventory_options opt;
  opt.targets = {"root@10.0.0.2", "gpu@b.lan:2222"};
  opt.agifarm_path = "/opt/agifarm/bin/agifarm";
  opt.no_measure = true;
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_TRUE(y) << y.err().message;
  EXPECT_NE(y->find("# Links between machines are not discovered"), std::string::npos) << *y;
  EXPECT_NE(y->find("      - model: rtx3090\n"), std::string::npos) << *y;

  auto inv = parse_back(*y);
  ASSERT_TRUE(inv) << inv.err().message << "\n" << *y;
  ASSERT_EQ(inv->nodes.size(), 2u);
  const node& big = inv->nodes[0];
  EXPECT_EQ(big.name, "big");
  EXPECT_EQ(big.ssh, "root@10.0.0.2");
  EXPECT_EQ(big.address, "10.0.0.2");
  EXPECT_EQ(big.agifarm_path, "/opt/agifarm/bin/agifarm");
  EXPECT_EQ(big.cpu_model, "AMD EPYC 7543 32-Core Processor");
  EXPECT_EQ(big.cpu_cores, 32);
  EXPECT_EQ(big.cpu_threads, 64);
  EXPECT_NEAR(static_cast<double>(big.ram_bytes) / k_gib, 251.5, 0.005);
  EXPECT_NEAR(big.ram_bandwidth_bytes_per_s, 34.6e9, 1e6);  // rounded to 0.1 GB/s
  EXPECT_EQ(big.ram_bandwidth_source, "declared");
  ASSERT_EQ(big.gpus.size(), 2u);
  EXPECT_EQ(big.gpus[0].catalogue_id, "rtx3090");
  EXPECT_EQ(big.gpus[0].vram_bytes, real_catalogue().find("rtx3090")->vram_bytes);
  EXPECT_EQ(big.gpus[1].catalogue_id, "rtx3090");
  EXPECT_EQ(big.gpus[1].pcie_gen, 3);  // the riser's discovered link is kept
  EXPECT_EQ(big.gpus[1].pcie_lanes, 4);
  EXPECT_EQ(big.gpus[0].pcie_gen, real_catalogue().find("rtx3090")->pcie_gen);

  const node& small = inv->nodes[1];
  EXPECT_EQ(small.name, "small");
  EXPECT_EQ(small.ssh, "gpu@b.lan:2222");
  EXPECT_EQ(small.address, "b.lan");
  ASSERT_EQ(small.gpus.size(), 1u);
  EXPECT_TRUE(small.gpus[0].catalogue_id.empty());
  EXPECT_EQ(small.gpus[0].name, "Tesla T4");
  EXPECT_NEAR(static_cast<double>(small.gpus[0].vram_bytes) / k_gib, 15, 0.005);
  EXPECT_DOUBLE_EQ(small.gpus[0].bandwidth_bytes_per_s, 320e9);
  EXPECT_DOUBLE_EQ(small.gpus[0].fp16_tflops, 65);
  EXPECT_EQ(small.gpus[0].pcie_gen, 3);
  EXPECT_EQ(small.gpus[0].pcie_lanes, 16);
  EXPECT_EQ(inv->gpu_count(), 3);

  // Each target ran `uname -n` and the given agifarm with --no-measure.
  for (const char* t : {"root@10.0.0.2", "gpu@b.lan:2222"}) {
    auto c = sh.calls_to(t);
    ASSERT_EQ(c.size(), 2u) << t;
    EXPECT_EQ(c[0], (std::vector<std::string>{"uname", "-n"}));
    EXPECT_EQ(c[1], (std::vector<std::string>{"/opt/agifarm/bin/agifarm", "hw", "--json", "--no-measure"}));
  }
}

TEST(hw_remote_inventory, PlainAgifarmAndMeasuringByDefault) {
  fake_shell sh;
  sh.add("h1", "h1", hw_json(discovered(4, 16)));
  remote_inventory_options opt;
  opt.targets = {"h1"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_TRUE(y) << y.err().message;
  EXPECT_EQ(sh.calls_to("h1").at(1), (std::vector<std::string>{"agifarm", "hw", "--json"}));
  auto inv = parse_back(*y);
  ASSERT_TRUE(inv) << inv.err().message << "\n" << *y;
  EXPECT_TRUE(inv->nodes[0].agifarm_path.empty());
  EXPECT_EQ(inv->nodes[0].ssh, "h1");
  EXPECT_EQ(inv->nodes[0].address, "h1");
  EXPECT_EQ(y->find("agifarm:"), std::string::npos) << *y;
}

TEST(hw_remote_inventory, ClashingHostNamesGetSuffixes) {
  fake_shell sh;
  sh.add("a@10.0.0.1", "ubuntu", hw_json(discovered(4, 16)));
  sh.add("a@10.0.0.2", "ubuntu", hw_json(discovered(4, 16)));
  sh.add("a@10.0.0.3", "ubuntu", hw_json(discovered(4, 16)));
  sh.add("a@10.0.0.4", "ubuntu-2", hw_json(discovered(4, 16)));  // taken by the second clash
  sh.add("a@10.0.0.5", "my box!", hw_json(discovered(4, 16)));
  sh.add("a@10.0.0.6", "", hw_json(discovered(4, 16)));  // no name: the target's host
  remote_inventory_options opt;
  opt.targets = {"a@10.0.0.1", "a@10.0.0.2", "a@10.0.0.3", "a@10.0.0.4", "a@10.0.0.5", "a@10.0.0.6"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_TRUE(y) << y.err().message;
  auto inv = parse_back(*y);
  ASSERT_TRUE(inv) << inv.err().message << "\n" << *y;
  std::vector<std::string> names;
  for (const auto& n : inv->nodes) names.push_back(n.name);
  EXPECT_EQ(names, (std::vector<std::string>{"ubuntu", "ubuntu-2", "ubuntu-3", "ubuntu-2-2", "my-box-",
                                             "10.0.0.6"}));
  EXPECT_EQ(inv->nodes[1].address, "10.0.0.2");
  // The commented link template names the written nodes.
  EXPECT_NE(y->find("#   - between: [ubuntu, ubuntu-2]\n"), std::string::npos) << *y;
}

TEST(hw_remote_inventory, UnreachableTargetsAreAllNamedAndNothingIsReturned) {
  fake_shell sh;
  sh.add("ok@h1", "h1", hw_json(discovered(4, 16)));
  remote_inventory_options opt;
  opt.targets = {"ok@h1", "root@down1", "root@down2:2200"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(y);
  EXPECT_EQ(y.err().exit_code, 1);
  EXPECT_NE(y.err().message.find("ssh root@down1: connection refused"), std::string::npos) << y.err().message;
  EXPECT_NE(y.err().message.find("ssh root@down2:2200: connection refused"), std::string::npos)
      << y.err().message;
  EXPECT_EQ(y.err().message.find("h1"), std::string::npos) << y.err().message;
}

TEST(hw_remote_inventory, ShellErrorsThatDoNotNameTheTargetAreNamed) {
  fake_shell sh;
  sh.add("h1", "h1", "");
  sh.machines["h1"].uname = make_error("no answer within 120 s");
  remote_inventory_options opt;
  opt.targets = {"h1"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(y);
  EXPECT_EQ(y.err().message, "ssh h1: no answer within 120 s");
}

TEST(hw_remote_inventory, AgifarmMissingThere) {
  fake_shell sh;
  sh.add("root@h1", "h1", "");
  sh.machines["root@h1"].hw = command_output{127, "", "bash: line 1: agifarm: command not found\n"};
  remote_inventory_options opt;
  opt.targets = {"root@h1"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(y);
  EXPECT_NE(y.err().message.find(
                "ssh root@h1: agifarm is not found there (bash: line 1: agifarm: command not found)"),
            std::string::npos)
      << y.err().message;
  EXPECT_NE(y.err().message.find("--agifarm PATH"), std::string::npos) << y.err().message;

  opt.agifarm_path = "/opt/x/agifarm";
  sh.machines["root@h1"].hw = command_output{126, "", "sh: 1: /opt/x/agifarm: Permission denied\n"};
  auto z = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(z);
  EXPECT_NE(z.err().message.find("ssh root@h1: /opt/x/agifarm cannot be run there"), std::string::npos)
      << z.err().message;
}

TEST(hw_remote_inventory, RemoteDiscoveryFailing) {
  fake_shell sh;
  sh.add("h1", "h1", "");
  sh.machines["h1"].hw = command_output{2, "", "agifarm hw: /usr/share/agifarm/gpus.yaml: cannot open\n"};
  remote_inventory_options opt;
  opt.targets = {"h1"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(y);
  EXPECT_NE(
      y.err().message.find(
          "ssh h1: `agifarm hw --json` exited 2: agifarm hw: /usr/share/agifarm/gpus.yaml: cannot open"),
      std::string::npos)
      << y.err().message;
  sh.machines["h1"].hw = command_output{0, "x", ""};
  sh.machines["h1"].uname = command_output{1, "", "uname: not here\n"};
  auto z = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(z);
  EXPECT_NE(z.err().message.find("ssh h1: `uname -n` exited 1: uname: not here"), std::string::npos)
      << z.err().message;
}

TEST(hw_remote_inventory, BadJsonNamesTheTarget) {
  struct bad {
    std::string out, needle;
  } cases[] = {
      {"", "the output is empty"},
      {"Welcome to h1\nnot json\n", "not JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{\"source\": \"local\"}", "nodes: missing"},
      {"{\"nodes\": []}", "nodes: 0 nodes where discovery gives one"},
      {"{\"nodes\": [{\"cpu_cores\": 4}]}", "nodes[0].ram_bytes: missing"},
      {"{\"nodes\": [{\"ram_bytes\": \"lots\"}]}", "nodes[0].ram_bytes: is not a number"},
      {"{\"nodes\": [{\"ram_bytes\": -5}]}", "nodes[0].ram_bytes: -5 is not a figure"},
      {"{\"nodes\": [{\"ram_bytes\": 1e30}]}", "too large"},
      {"{\"nodes\": [{\"ram_bytes\": 1e9, \"cpu_cores\": 2.5}]}",
       "nodes[0].cpu_cores: 2.5 is not a whole number"},
      {"{\"nodes\": [{\"ram_bytes\": 1e9, \"gpus\": {}}]}", "nodes[0].gpus: is not a list"},
      {"{\"nodes\": [{\"ram_bytes\": 1e9, \"gpus\": [7]}]}", "nodes[0].gpus[0]: is not an object"},
      {"{\"nodes\": [{\"ram_bytes\": 1e9, \"gpus\": [{\"name\": 3}]}]}",
       "nodes[0].gpus[0].name: is not a string"},
  };
  for (const auto& c : cases) {
    fake_shell sh;
    sh.add("root@h1", "h1", c.out);
    remote_inventory_options opt;
    opt.targets = {"root@h1"};
    auto y = discover_remote_inventory(sh, real_catalogue(), opt);
    ASSERT_FALSE(y) << c.out;
    EXPECT_EQ(y.err().message.rfind("ssh root@h1: `agifarm hw --json` did not print its hardware JSON: ", 0),
              0u)
        << y.err().message;
    EXPECT_NE(y.err().message.find(c.needle), std::string::npos) << y.err().message;
  }
}

TEST(hw_remote_inventory, BadOrRepeatedTargetsRunNothing) {
  fake_shell sh;
  remote_inventory_options opt;
  auto none = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.err().exit_code, 2);
  opt.targets = {"h1", "root@"};
  auto bad = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.err().exit_code, 2);
  EXPECT_NE(bad.err().message.find("ssh target 'root@': empty host"), std::string::npos) << bad.err().message;
  opt.targets = {"root@h1", "h2", "root@h1"};
  auto twice = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.err().exit_code, 2);
  EXPECT_NE(twice.err().message.find("ssh target 'root@h1' is given twice"), std::string::npos)
      << twice.err().message;
  EXPECT_TRUE(sh.calls.empty());
}

TEST(hw_remote_inventory, GpuOutsideTheCatalogueWithUnknownFiguresIsAnError) {
  gpu g;
  g.name = "Mystery Accelerator";
  g.vram_bytes = 16 * static_cast<std::uint64_t>(k_gib);
  fake_shell sh;
  sh.add("root@h1", "h1", hw_json(discovered(4, 16, {g})));
  remote_inventory_options opt;
  opt.targets = {"root@h1"};
  auto y = discover_remote_inventory(sh, real_catalogue(), opt);
  ASSERT_FALSE(y);
  EXPECT_NE(
      y.err().message.find("node 'h1' (ssh root@h1): GPU 0 'Mystery Accelerator' is not in the catalogue"),
      std::string::npos)
      << y.err().message;
  EXPECT_NE(y.err().message.find("memory bandwidth and FP16 TFLOPS are unknown"), std::string::npos)
      << y.err().message;
}

TEST(hw_remote_inventory, ReportedNameMatchedByThisCatalogue) {
  // The remote's (older) catalogue did not know the card; this one matches its reported name.
  gpu g;
  g.name = "NVIDIA GeForce RTX 4090";
  g.vram_bytes = 24564ull * 1024 * 1024;
  g.pcie_gen = 4;
  g.pcie_lanes = 16;
  node n = discovered(4, 16, {g});
  n.name = "x";
  n.address = "x";
  auto y = inventory_yaml({n}, real_catalogue());
  ASSERT_TRUE(y) << y.err().message;
  EXPECT_NE(y->find("- model: rtx4090\n"), std::string::npos) << *y;
  EXPECT_EQ(y->find("vram_gb"), std::string::npos) << *y;  // within 2 % of the catalogue's: not repeated
  auto inv = parse_back(*y);
  ASSERT_TRUE(inv) << inv.err().message << "\n" << *y;
  EXPECT_EQ(inv->nodes[0].gpus[0].catalogue_id, "rtx4090");
}

TEST(hw_remote_inventory, YamlQuotingRoundTrips) {
  node n = discovered(2, 0.5);
  n.name = "n1";
  n.address = "fe80::1";
  n.ssh = "root@[fe80::1]:22";
  n.cpu_model = "CPU \"quoted\" # not a comment: {x}, [y] \\ back\tslash";
  n.agifarm_path = "/home/me/my tools/agifarm";
  n.llama_bin = "~/llama.cpp/build/bin";
  n.state_dir = "yes";
  n.ram_bandwidth_source = "catalogue";  // not written: the reader's catalogue gives it
  n.cpu_threads = 1;                     // fewer than cores (a bad report): written as cores
  auto y = inventory_yaml({n}, real_catalogue(), {"first line", "second\nthird"});
  ASSERT_TRUE(y) << y.err().message;
  EXPECT_EQ(y->rfind("# first line\n# second\n# third\n", 0), 0u) << *y;
  EXPECT_EQ(y->find("ram_bandwidth_gbs"), std::string::npos) << *y;
  auto inv = parse_back(*y);
  ASSERT_TRUE(inv) << inv.err().message << "\n" << *y;
  const node& r = inv->nodes[0];
  EXPECT_EQ(r.address, "fe80::1");
  EXPECT_EQ(r.ssh, "root@[fe80::1]:22");
  EXPECT_EQ(r.cpu_model, n.cpu_model);
  EXPECT_EQ(r.agifarm_path, n.agifarm_path);
  EXPECT_EQ(r.llama_bin, n.llama_bin);
  EXPECT_EQ(r.state_dir, "yes");
  EXPECT_EQ(r.cpu_threads, 2);
  EXPECT_EQ(r.ram_bandwidth_source, "catalogue");
  EXPECT_NEAR(static_cast<double>(r.ram_bytes) / k_gib, 0.5, 0.005);
}

TEST(hw_remote_inventory, NodeWithoutRamIsAnError) {
  node n = discovered(2, 0);
  n.name = "n1";
  n.ssh = "h";
  auto y = inventory_yaml({n}, real_catalogue());
  ASSERT_FALSE(y);
  EXPECT_NE(y.err().message.find("node 'n1' (ssh h): its RAM size is unknown"), std::string::npos)
      << y.err().message;
}

TEST(hw_remote_inventory, NodeFromHwJsonSkipsALoginBanner) {
  node d = discovered(4, 16, {catalogue_gpu("rtx3090", 0)});
  auto n = node_from_hw_json("Last login: yesterday\n" + hw_json(d));
  ASSERT_TRUE(n) << n.err().message;
  EXPECT_EQ(n->cpu_cores, 4);
  EXPECT_EQ(n->ram_bytes, d.ram_bytes);
  ASSERT_EQ(n->gpus.size(), 1u);
  EXPECT_EQ(n->gpus[0].catalogue_id, "rtx3090");
  EXPECT_EQ(n->ram_bandwidth_source, "measured");
}

TEST(hw_remote_inventory, EveryExampleInventoryIsWrittenBackAsItself) {
  // inventory_yaml() is a writer of the inventory format: every node of every example survives
  // parse -> write -> parse (links, free memory and CPU clocks are not written).
  for (const char* file : {"one-gpu.yaml", "two-3090.yaml", "eight-gpu.yaml", "three-nodes.yaml",
                           "eight-by-eight.yaml", "cpu-only.yaml"}) {
    SCOPED_TRACE(file);
    auto a = load_inventory(std::string(AGIFARM_SOURCE_DIR) + "/docs/examples/" + file, real_catalogue());
    ASSERT_TRUE(a) << a.err().message;
    auto y = inventory_yaml(a->nodes, real_catalogue());
    ASSERT_TRUE(y) << y.err().message;
    auto b = parse_back(*y);
    ASSERT_TRUE(b) << b.err().message << "\n" << *y;
    ASSERT_EQ(a->nodes.size(), b->nodes.size());
    for (std::size_t i = 0; i < a->nodes.size(); ++i) {
      const node& x = a->nodes[i];
      const node& z = b->nodes[i];
      EXPECT_EQ(x.name, z.name);
      EXPECT_EQ(x.address, z.address);
      EXPECT_EQ(x.cpu_model, z.cpu_model);
      EXPECT_EQ(x.cpu_cores, z.cpu_cores);
      EXPECT_EQ(x.cpu_threads, z.cpu_threads);
      EXPECT_NEAR(static_cast<double>(x.ram_bytes), static_cast<double>(z.ram_bytes), 0.005 * k_gib);
      EXPECT_EQ(x.ram_bandwidth_source, z.ram_bandwidth_source);
      EXPECT_NEAR(x.ram_bandwidth_bytes_per_s, z.ram_bandwidth_bytes_per_s, 0.05e9);
      ASSERT_EQ(x.gpus.size(), z.gpus.size()) << x.name;
      for (std::size_t k = 0; k < x.gpus.size(); ++k) {
        const gpu& g = x.gpus[k];
        const gpu& h = z.gpus[k];
        EXPECT_EQ(g.catalogue_id, h.catalogue_id);
        EXPECT_EQ(g.name, h.name);
        EXPECT_EQ(g.vendor, h.vendor);
        EXPECT_EQ(g.index, h.index);
        EXPECT_NEAR(static_cast<double>(g.vram_bytes), static_cast<double>(h.vram_bytes), 0.005 * k_gib);
        EXPECT_NEAR(g.bandwidth_bytes_per_s, h.bandwidth_bytes_per_s, 0.05e9);
        EXPECT_NEAR(g.fp16_tflops, h.fp16_tflops, 0.005);
        EXPECT_EQ(g.pcie_gen, h.pcie_gen);
        EXPECT_EQ(g.pcie_lanes, h.pcie_lanes);
      }
    }
  }
}

TEST(hw_remote_inventory, SmallestFiguresStayReadable) {
  node n = discovered(1, 0.125);
  n.name = "tiny";
  n.address = "tiny";
  gpu g;
  g.name = "Little";
  g.vram_bytes = static_cast<std::uint64_t>(0.125 * k_gib);
  g.bandwidth_bytes_per_s = 1e9;
  g.fp16_tflops = 0.01;
  n.gpus = {g};
  auto y = inventory_yaml({n}, real_catalogue());
  ASSERT_TRUE(y) << y.err().message;
  EXPECT_NE(y->find("ram_gb: 0.125\n"), std::string::npos) << *y;  // not 0.12, below the minimum
  auto inv = parse_back(*y);
  ASSERT_TRUE(inv) << inv.err().message << "\n" << *y;
  EXPECT_EQ(inv->nodes[0].gpus[0].vram_bytes, g.vram_bytes);
}

TEST(hw_remote_inventory, NodeNameFromHostName) {
  EXPECT_EQ(node_name_from_hostname("gpu-01.lan"), "gpu-01.lan");
  EXPECT_EQ(node_name_from_hostname("a b/c"), "a-b-c");
  EXPECT_EQ(node_name_from_hostname(""), "");
  EXPECT_EQ(node_name_from_hostname("..."), "");
  EXPECT_EQ(node_name_from_hostname(std::string(300, 'x')).size(), 128u);
}

}  // namespace
}  // namespace agifarm::hw
