// `agifarm hw` end to end: the real binary on this machine, checked against /proc read here
// independently; inventories; a stand-in nvidia-smi on PATH; the data directory lookup; `--ssh`
// through a stand-in ssh on PATH that runs the command here.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/support.hpp"

namespace agifarm {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "MemTotal:  123 kB" -> 123 * 1024, read without the code under test.
std::uint64_t meminfo_bytes(const std::string& key) {
  std::istringstream in(slurp("/proc/meminfo"));
  std::string k, unit;
  std::uint64_t v = 0;
  while (in >> k >> v) {
    std::getline(in, unit);
    if (k == key + ":") return v * 1024;
  }
  return 0;
}

bool on_path(const std::string& tool) {
  return test::run({"/bin/sh", "-c", "command -v " + tool}).exit_code == 0;
}

boost::json::object run_json(const std::vector<std::string>& argv) {
  auto r = test::run(argv);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  boost::json::error_code ec;
  auto v = boost::json::parse(r.output, ec);
  EXPECT_FALSE(ec) << r.output;
  return ec || !v.is_object() ? boost::json::object{} : v.as_object();
}

TEST(hw_cli, discovers_this_machine_as_proc_says) {
  std::string cache = test::temp_dir("hw-cli-cache");
  auto j = run_json({"/usr/bin/env", "XDG_CACHE_HOME=" + cache, test::agifarm_cli(), "hw", "--json"});
  ASSERT_TRUE(j.contains("nodes"));
  ASSERT_EQ(j["nodes"].as_array().size(), 1u);
  auto n = j["nodes"].as_array()[0].as_object();

  std::string cpuinfo = slurp("/proc/cpuinfo");
  int processors = 0;
  std::string model;
  std::istringstream in(cpuinfo);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("processor", 0) == 0) ++processors;
    if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
  }
  EXPECT_EQ(n["cpu_threads"].as_int64(), processors);
  EXPECT_EQ(n["cpu_threads"].as_int64(), ::sysconf(_SC_NPROCESSORS_CONF));
  EXPECT_GE(n["cpu_cores"].as_int64(), 1);
  EXPECT_LE(n["cpu_cores"].as_int64(), processors);
  if (!model.empty()) {
    EXPECT_EQ(n["cpu_model"].as_string(), model);
  }

  EXPECT_EQ(n["ram_bytes"].as_int64(), static_cast<std::int64_t>(meminfo_bytes("MemTotal")));
  double avail = static_cast<double>(meminfo_bytes("MemAvailable"));
  double free_reported = static_cast<double>(n["ram_free_bytes"].as_int64());
  EXPECT_GT(free_reported, 0);
  EXPECT_NEAR(free_reported, avail,
              0.10 * static_cast<double>(meminfo_bytes("MemTotal")));  // it moves a little

  // RAM bandwidth: really measured, then cached.
  EXPECT_EQ(n["ram_bandwidth_source"].as_string(), "measured");
  double bw = n["ram_bandwidth_bytes_per_s"].as_double();
  EXPECT_GT(bw, 1e9);
  EXPECT_LT(bw, 2e12);
  EXPECT_TRUE(fs::exists(cache + "/agifarm/hw.json"));
  auto again = run_json({"/usr/bin/env", "XDG_CACHE_HOME=" + cache, test::agifarm_cli(), "hw", "--json"});
  auto n2 = again["nodes"].as_array()[0].as_object();
  EXPECT_EQ(n2["ram_bandwidth_source"].as_string(), "cache");
  EXPECT_DOUBLE_EQ(n2["ram_bandwidth_bytes_per_s"].as_double(), bw);

  if (!on_path("nvidia-smi") && !on_path("rocm-smi")) {
    EXPECT_TRUE(n["gpus"].as_array().empty());
    ASSERT_FALSE(j["notes"].as_array().empty());
    EXPECT_NE(std::string(j["notes"].as_array()[0].as_string()).find("no GPU found"), std::string::npos);
    auto human = test::run({"/usr/bin/env", "XDG_CACHE_HOME=" + cache, test::agifarm_cli(), "hw"});
    EXPECT_EQ(human.exit_code, 0) << human.output;
    EXPECT_NE(human.output.find("CPU only"), std::string::npos) << human.output;
    EXPECT_NE(human.output.find(std::to_string(processors) + " threads"), std::string::npos) << human.output;
  }
}

TEST(hw_cli, stand_in_nvidia_smi_on_path_is_run_with_the_documented_query) {
  std::string dir = test::temp_dir("hw-cli-fake-smi");
  std::string fixture = std::string(AGIFARM_SOURCE_DIR) + "/tests/hw/fixtures/nvidia-smi-2x3090.csv";
  {
    std::ofstream s(dir + "/nvidia-smi");
    s << "#!/bin/sh\n"
         "[ \"$1\" = "
         "\"--query-gpu=index,name,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max\" ] || "
         "exit 9\n"
         "[ \"$2\" = \"--format=csv,noheader,nounits\" ] || exit 9\n"
         "cat '"
      << fixture << "'\n";
  }
  ::chmod((dir + "/nvidia-smi").c_str(), 0755);
  std::string path = dir + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  auto j = run_json({"/usr/bin/env", "PATH=" + path, "XDG_CACHE_HOME=" + dir, test::agifarm_cli(), "hw",
                     "--json", "--no-measure"});
  ASSERT_TRUE(j.contains("nodes"));
  auto n = j["nodes"].as_array()[0].as_object();
  ASSERT_EQ(n["gpus"].as_array().size(), 2u);
  auto g = n["gpus"].as_array()[1].as_object();
  EXPECT_EQ(g["catalogue_id"].as_string(), "rtx3090");
  EXPECT_EQ(g["vram_bytes"].as_int64(), 24576ll * 1024 * 1024);
  EXPECT_EQ(g["free_vram_bytes"].as_int64(), 24253ll * 1024 * 1024);
  EXPECT_DOUBLE_EQ(g["bandwidth_bytes_per_s"].as_double(), 936e9);
  EXPECT_EQ(n["ram_bandwidth_source"].as_string(), "catalogue");  // --no-measure, empty cache
  EXPECT_EQ(j["gpu_count"].as_int64(), 2);
}

TEST(hw_cli, validates_and_prints_every_example_inventory) {
  struct ex {
    const char* file;
    int gpus;
    int nodes;
  } cases[] = {{"one-gpu.yaml", 1, 1},     {"two-3090.yaml", 2, 1}, {"eight-gpu.yaml", 8, 1},
               {"three-nodes.yaml", 6, 3}, {"cpu-only.yaml", 0, 1}, {"eight-by-eight.yaml", 64, 8}};
  for (const auto& c : cases) {
    std::string file = std::string(AGIFARM_SOURCE_DIR) + "/docs/examples/" + c.file;
    auto j = run_json({test::agifarm_cli(), "hw", "--inventory", file, "--json"});
    EXPECT_EQ(j["gpu_count"].as_int64(), c.gpus) << c.file;
    EXPECT_EQ(j["nodes"].as_array().size(), static_cast<std::size_t>(c.nodes)) << c.file;
    EXPECT_EQ(j["source"].as_string(), file);
    auto human = test::run({test::agifarm_cli(), "hw", "--inventory", file});
    EXPECT_EQ(human.exit_code, 0) << human.output;
    EXPECT_NE(human.output.find("node "), std::string::npos) << human.output;
  }
}

TEST(hw_cli, bad_inventory_exits_2_with_file_line_column_and_suggestion) {
  std::string dir = test::temp_dir("hw-cli-bad");
  std::string file = dir + "/bad.yaml";
  std::ofstream(file) << "nodes:\n  - name: box\n    ram_gb: 64\n    gpus:\n      - model: rtx3095\n";
  auto r = test::run({test::agifarm_cli(), "hw", "--inventory", file});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(file + ":5:16: key 'model': unknown GPU 'rtx3095'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rtx3090"), std::string::npos) << r.output;
  auto missing = test::run({test::agifarm_cli(), "hw", "--inventory", dir + "/nope.yaml"});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("nope.yaml: cannot open"), std::string::npos) << missing.output;
}

TEST(hw_cli, finds_the_catalogue_from_env_and_from_an_installed_layout) {
  std::string dir = test::temp_dir("hw-cli-data");
  // AGIFARM_DATA_DIR wins.
  fs::create_directories(dir + "/data");
  std::ofstream(dir + "/data/gpus.yaml")
      << "gpus:\n  - {id: mycard, vendor: nvidia, vram_gib: 8, bandwidth_gbs: 100, fp16_tflops: 10}\n";
  std::string inv = dir + "/inv.yaml";
  std::ofstream(inv) << "nodes:\n  - name: a\n    ram_gb: 8\n    gpus: [{model: mycard}]\n";
  auto j = run_json({"/usr/bin/env", "AGIFARM_DATA_DIR=" + dir + "/data", test::agifarm_cli(), "hw",
                     "--inventory", inv, "--json"});
  EXPECT_EQ(j["catalogue"].as_string(), dir + "/data/gpus.yaml");
  EXPECT_EQ(j["gpu_count"].as_int64(), 1);
  // <prefix>/bin/agifarm finds <prefix>/share/agifarm/gpus.yaml.
  fs::create_directories(dir + "/prefix/bin");
  fs::create_directories(dir + "/prefix/share/agifarm");
  fs::copy_file(test::agifarm_cli(), dir + "/prefix/bin/agifarm", fs::copy_options::overwrite_existing);
  fs::copy_file(std::string(AGIFARM_SOURCE_DIR) + "/data/gpus.yaml", dir + "/prefix/share/agifarm/gpus.yaml",
                fs::copy_options::overwrite_existing);
  auto k =
      run_json({"/usr/bin/env", "-u", "AGIFARM_DATA_DIR", dir + "/prefix/bin/agifarm", "hw", "--inventory",
                std::string(AGIFARM_SOURCE_DIR) + "/docs/examples/two-3090.yaml", "--json"});
  EXPECT_EQ(k["catalogue"].as_string(), dir + "/prefix/share/agifarm/gpus.yaml");
}

// A stand-in `ssh` that runs the remote command on this machine; a host with "down" in its name is
// refused like a real ssh client would report it. Returns the PATH to run agifarm with.
std::string stand_in_ssh(const std::string& dir) {
  {
    std::ofstream s(dir + "/ssh");
    s << "#!/bin/sh\n"
         "for a; do last=$a; done\n"
         "prev=; host=\n"
         "for a; do [ \"$a\" = -- ] && host=$prev; prev=$a; done\n"
         "echo \"$@\" >> \"$(dirname \"$0\")/ssh.log\"\n"
         "case \"$host\" in *down*) echo \"ssh: connect to host $host port 22: Connection refused\" >&2; "
         "exit 255;; esac\n"
         "exec sh -c \"$last\"\n";
  }
  ::chmod((dir + "/ssh").c_str(), 0755);
  return dir + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
}

TEST(hw_cli, ssh_writes_an_inventory_that_reads_back) {
  std::string dir = test::temp_dir("hw-cli-ssh");
  std::string path = stand_in_ssh(dir);
  std::string out = dir + "/farm-hw.yaml";
  auto r = test::run({"/usr/bin/env", "PATH=" + path, "XDG_CACHE_HOME=" + dir, test::agifarm_cli(), "hw",
                      "--ssh", "me@a.lan", "--ssh", "me@b.lan:2222", "--ssh-option=-F",
                      "--ssh-option=/dev/null", "--agifarm", test::agifarm_cli(), "--no-measure", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("wrote " + out + " (2 nodes)"), std::string::npos) << r.output;
  std::string log = slurp(dir + "/ssh.log");
  EXPECT_NE(log.find("-F /dev/null -p 2222 me@b.lan -- "), std::string::npos) << log;
  EXPECT_NE(log.find(" hw --json --no-measure"), std::string::npos) << log;

  auto j = run_json({test::agifarm_cli(), "hw", "--inventory", out, "--json"});
  ASSERT_EQ(j["nodes"].as_array().size(), 2u) << slurp(out);
  auto a = j["nodes"].as_array()[0].as_object();
  auto b = j["nodes"].as_array()[1].as_object();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(a["name"].as_string(), host);  // both are this machine: the second gets -2
  EXPECT_EQ(b["name"].as_string(), std::string(host) + "-2");
  EXPECT_EQ(a["ssh"].as_string(), "me@a.lan");
  EXPECT_EQ(b["ssh"].as_string(), "me@b.lan:2222");
  EXPECT_EQ(a["address"].as_string(), "a.lan");
  EXPECT_EQ(b["address"].as_string(), "b.lan");
  EXPECT_EQ(a["agifarm"].as_string(), test::agifarm_cli());
  EXPECT_EQ(a["cpu_threads"].as_int64(), ::sysconf(_SC_NPROCESSORS_CONF));
  EXPECT_NEAR(static_cast<double>(a["ram_bytes"].as_int64()), static_cast<double>(meminfo_bytes("MemTotal")),
              0.01 * 1073741824.0);

  // Without -o the YAML goes to stdout.
  auto p = test::run({"/usr/bin/env", "PATH=" + path, "XDG_CACHE_HOME=" + dir, test::agifarm_cli(), "hw",
                      "--ssh", "me@a.lan", "--agifarm", test::agifarm_cli(), "--no-measure"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("nodes:\n  - name: "), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("    ssh: me@a.lan\n"), std::string::npos) << p.output;
}

TEST(hw_cli, ssh_failures_name_the_target_and_write_nothing) {
  std::string dir = test::temp_dir("hw-cli-ssh-fail");
  std::string path = stand_in_ssh(dir);
  std::string out = dir + "/farm-hw.yaml";
  auto down = test::run({"/usr/bin/env", "PATH=" + path, "XDG_CACHE_HOME=" + dir, test::agifarm_cli(), "hw",
                         "--ssh", "me@a.lan", "--ssh", "me@down.lan", "--agifarm", test::agifarm_cli(),
                         "--no-measure", "-o", out});
  EXPECT_EQ(down.exit_code, 1) << down.output;
  EXPECT_NE(down.output.find("ssh me@down.lan: connection refused"), std::string::npos) << down.output;
  EXPECT_FALSE(fs::exists(out));

  auto missing = test::run({"/usr/bin/env", "PATH=" + path, test::agifarm_cli(), "hw", "--ssh", "me@a.lan",
                            "--agifarm", dir + "/no/agifarm", "-o", out});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("ssh me@a.lan: " + dir + "/no/agifarm is not found there"), std::string::npos)
      << missing.output;
  EXPECT_FALSE(fs::exists(out));

  auto bad =
      test::run({"/usr/bin/env", "PATH=" + path, test::agifarm_cli(), "hw", "--ssh", "root@", "-o", out});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("ssh target 'root@': empty host"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(out));

  auto mixed = test::run({test::agifarm_cli(), "hw", "--ssh", "h", "--json"});
  EXPECT_EQ(mixed.exit_code, 2) << mixed.output;
  auto lone = test::run({test::agifarm_cli(), "hw", "-o", out});
  EXPECT_EQ(lone.exit_code, 2) << lone.output;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace agifarm
