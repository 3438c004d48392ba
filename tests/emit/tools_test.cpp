// The generated files checked by the tools that will read them, on every plan fixture:
// bash -n and shellcheck on every script, python3 -m py_compile on the inference program,
// docker-compose config on every compose file, systemd-analyze verify on every unit, the DeepSpeed and
// Accelerate files against schemas of their documented keys (tests/emit/schema/), and every gateway.yaml
// through the gateway's own config loader (with the backend key farm.env holds).
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>
#include <filesystem>
#include <regex>

#include "emit_test_util.hpp"
#include "gateway/config.hpp"
#include "support/support.hpp"

namespace agifarm::emit::test {
namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

// Runs a tool found on PATH (the support runner execs argv[0] as a path).
agifarm::test::run_result tool(std::vector<std::string> argv) {
  argv.insert(argv.begin(), "/usr/bin/env");
  return agifarm::test::run(argv);
}

fs::path emit_to(const std::string& plan, const std::string& target, emit_options opt = {}) {
  // Per process: ctest runs these tests in parallel and several emit the same plan and target.
  fs::path d =
      fs::path(agifarm::test::work_dir()) / ("emit-tools-" + std::to_string(::getpid())) / plan / target;
  fs::remove_all(d);
  auto out = emit_target(target, load_plan(plan), opt);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.err().message);
  if (out.ok()) {
    EXPECT_TRUE(write_files(d.string(), *out, false).ok());
  }
  return d;
}

std::vector<fs::path> files_named(const fs::path& dir, const std::regex& re) {
  std::vector<fs::path> v;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && std::regex_match(e.path().filename().string(), re)) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

bool have(const std::string& name) {
  return agifarm::test::run({"/bin/sh", "-c", "command -v " + name}).exit_code == 0;
}

TEST(EmitTools, ScriptsPassBashNAndShellcheck) {
  ASSERT_TRUE(have("shellcheck")) << "shellcheck (Debian package) is required";
  int checked = 0;
  for (const auto& plan : plan_names())
    for (const char* target : {"llama", "vllm", "deepspeed"}) {
      fs::path d = emit_to(plan, target);
      for (const auto& f : files_named(d, std::regex(".*\\.sh"))) {
        auto n = tool({"bash", "-n", f.string()});
        EXPECT_EQ(n.exit_code, 0) << f << "\n" << n.output;
        auto sc = tool({"shellcheck", "--shell=bash", "--severity=style", f.string()});
        EXPECT_EQ(sc.exit_code, 0) << f << "\n" << sc.output;
        EXPECT_NE(fs::status(f).permissions() & fs::perms::owner_exec, fs::perms::none) << f;
        ++checked;
      }
    }
  EXPECT_GE(checked, 16);
}

TEST(EmitTools, InferenceProgramCompiles) {
  for (const auto& plan : plan_names()) {
    fs::path d = emit_to(plan, "deepspeed");
    auto r = tool({"python3", "-m", "py_compile", (d / "zero3_generate.py").string()});
    EXPECT_EQ(r.exit_code, 0) << plan << "\n" << r.output;
  }
}

TEST(EmitTools, ComposeFilesPassDockerComposeConfig) {
  ASSERT_TRUE(have("docker-compose")) << "docker-compose (Debian package) is required";
  int checked = 0;
  for (const auto& plan : plan_names()) {
    fs::path d = emit_to(plan, "compose");
    for (const auto& f : files_named(d, std::regex("docker-compose\\.yml"))) {
      // config -q: parse, interpolate and validate against the compose schema; no daemon needed.
      auto r = tool({"docker-compose", "--project-directory", f.parent_path().string(), "-f", f.string(),
                     "config", "-q"});
      EXPECT_EQ(r.exit_code, 0) << f << "\n" << r.output;
      auto full = tool(
          {"docker-compose", "--project-directory", f.parent_path().string(), "-f", f.string(), "config"});
      EXPECT_EQ(full.exit_code, 0);
      EXPECT_NE(full.output.find("healthcheck"), std::string::npos) << full.output;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1 + 1 + 1 + 3);
}

TEST(EmitTools, SystemdUnitsPassSystemdAnalyzeVerify) {
  ASSERT_TRUE(have("systemd-analyze"));
  emit_options opt;
  // verify checks that ExecStart binaries exist: point the units at the real ones of this machine.
  opt.llama_bin_dir = agifarm::test::llama_bin();
  opt.agifarm_bin = agifarm::test::agifarm_cli();
  ASSERT_TRUE(fs::exists(opt.llama_bin_dir + "/llama-server"));
  ASSERT_TRUE(fs::exists(opt.llama_bin_dir + "/ggml-rpc-server"));
  int checked = 0;
  for (const auto& plan : plan_names()) {
    fs::path d = emit_to(plan, "systemd", opt);
    std::set<fs::path> dirs;
    for (const auto& f : files_named(d, std::regex(".*\\.(service|target)"))) dirs.insert(f.parent_path());
    for (const auto& dir : dirs) {
      std::vector<std::string> argv{"SYSTEMD_UNIT_PATH=" + dir.string() + ":", "systemd-analyze", "verify",
                                    "--man=no"};
      for (const auto& f : files_named(dir, std::regex(".*\\.(service|target)"))) argv.push_back(f.string());
      auto r = tool(argv);
      EXPECT_EQ(r.exit_code, 0) << dir << "\n" << r.output;
      // Any complaint about our own units fails too (verify returns 0 on some warnings).
      EXPECT_EQ(r.output.find("agifarm"), std::string::npos) << dir << "\n" << r.output;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1 + 1 + 1 + 3);
}

// --- a small JSON Schema subset: type, properties, additionalProperties, required, enum, minimum.
bool type_ok(const json::value& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_bool();
  if (t == "integer") return v.is_int64() || v.is_uint64();
  if (t == "number") return v.is_number();
  if (t == "null") return v.is_null();
  return false;
}

void validate(const json::value& v, const json::object& schema, const std::string& path,
              std::vector<std::string>& errors) {
  if (auto* t = schema.if_contains("type")) {
    bool ok = false;
    if (t->is_string())
      ok = type_ok(v, std::string(t->as_string()));
    else
      for (const auto& x : t->as_array()) ok = ok || type_ok(v, std::string(x.as_string()));
    if (!ok) {
      errors.push_back(path + ": wrong type " + json::serialize(v));
      return;
    }
  }
  if (auto* e = schema.if_contains("enum")) {
    bool found = false;
    for (const auto& x : e->as_array())
      found = found || x == v ||
              (x.is_number() && v.is_number() && x.to_number<double>() == v.to_number<double>());
    if (!found) errors.push_back(path + ": " + json::serialize(v) + " is not one of " + json::serialize(*e));
  }
  if (auto* m = schema.if_contains("minimum");
      m && v.is_number() && v.to_number<double>() < m->to_number<double>())
    errors.push_back(path + ": below the minimum");
  if (!v.is_object()) return;
  const auto& o = v.as_object();
  const json::object* props = schema.contains("properties") ? &schema.at("properties").as_object() : nullptr;
  if (auto* req = schema.if_contains("required"))
    for (const auto& k : req->as_array())
      if (!o.contains(k.as_string()))
        errors.push_back(path + "." + std::string(k.as_string()) + ": required");
  for (const auto& [k, val] : o) {
    std::string p = path + "." + std::string(k);
    if (props && props->contains(k))
      validate(val, props->at(k).as_object(), p, errors);
    else if (auto* ap = schema.if_contains("additionalProperties"); ap && ap->is_bool() && !ap->as_bool())
      errors.push_back(p + ": not a documented key");
  }
}

// YAML -> JSON with YAML 1.2 core-schema scalars (quoted scalars stay strings).
json::value to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    json::object o;
    for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
    return o;
  }
  if (n.IsSequence()) {
    json::array a;
    for (const auto& x : n) a.push_back(to_json(x));
    return a;
  }
  if (n.IsNull()) return nullptr;
  std::string s = n.Scalar();
  if (n.Tag() == "!") return json::value(s);
  if (std::regex_match(s, std::regex("-?[0-9]+"))) return json::value(std::stoll(s));
  if (std::regex_match(s, std::regex("-?[0-9]*\\.[0-9]+([eE][-+]?[0-9]+)?")))
    return json::value(std::stod(s));
  if (s == "true" || s == "false") return json::value(s == "true");
  if (s == "null" || s == "~") return nullptr;
  return json::value(s);
}

json::object schema(const std::string& name) {
  return json::parse(read_text(source_path("tests/emit/schema/" + name))).as_object();
}

TEST(EmitTools, DeepspeedAndAccelerateFilesMatchTheirDocumentedKeys) {
  auto ds_schema = schema("deepspeed_config.json");
  auto acc_schema = schema("accelerate_config.json");
  for (const auto& plan : plan_names()) {
    fs::path d = emit_to(plan, "deepspeed");
    std::vector<std::string> errors;
    validate(json::parse(read_text((d / "ds_zero3.json").string())), ds_schema, "ds_zero3.json", errors);
    auto accs = files_named(d, std::regex("accelerate-.*\\.yaml"));
    EXPECT_FALSE(accs.empty());
    std::set<long long> ranks;
    for (const auto& f : accs) {
      auto v = to_json(YAML::LoadFile(f.string()));
      validate(v, acc_schema, f.filename().string(), errors);
      ranks.insert(v.as_object().at("machine_rank").as_int64());
      EXPECT_EQ(v.as_object().at("num_machines").as_int64(), static_cast<long long>(accs.size()));
      // The DeepSpeed file it names is there.
      EXPECT_TRUE(
          fs::exists(d / std::string(v.at("deepspeed_config").at("deepspeed_config_file").as_string())));
    }
    EXPECT_EQ(ranks.size(), accs.size()) << "machine ranks are distinct";
    EXPECT_TRUE(errors.empty()) << plan << ":\n"
                                << [&] {
                                     std::string s;
                                     for (const auto& e : errors) s += e + "\n";
                                     return s;
                                   }();
  }
}

TEST(EmitTools, SchemaValidatorRejectsUndocumentedKeys) {
  std::vector<std::string> errors;
  validate(
      json::parse(
          R"({"zero_optimization": {"stage": 4, "offload_params": {}}, "train_micro_batch_size_per_gpu": 1})"),
      schema("deepspeed_config.json"), "x", errors);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("stage"), std::string::npos);
  EXPECT_NE(errors[1].find("offload_params: not a documented key"), std::string::npos);
}

TEST(EmitTools, GatewayConfigsLoadInTheGateway) {
  int checked = 0;
  for (const auto& plan : plan_names())
    for (const char* target : {"llama", "compose", "systemd"}) {
      fs::path d = emit_to(plan, target);
      // The gateway gets the backend key from farm.env (key_env: AGIFARM_BACKEND_KEY), as its start does.
      std::smatch m;
      std::string env = read_text((d / k_farm_env_file).string());
      std::optional<std::string> key;
      if (std::regex_search(env, m, std::regex("\nAGIFARM_BACKEND_KEY=([^\n]+)\n"))) key = m[1];
      gateway::env_lookup lookup = [&](const std::string& var) {
        return var == k_backend_key_var ? key : std::nullopt;
      };
      for (const auto& f : files_named(d, std::regex("gateway\\.yaml"))) {
        auto cfg = gateway::load_config(f.string(), lookup);
        EXPECT_TRUE(cfg.ok()) << f << ": " << (cfg.ok() ? "" : cfg.err().message);
        if (cfg.ok()) {
          EXPECT_EQ(cfg->pools.size(), load_plan(plan).deployment.pools.size());
          for (const auto& pool : cfg->pools)
            for (const auto& r : pool.replicas)
              if (r.url.find("127.0.0.1") == std::string::npos) {
                EXPECT_EQ(r.api_key, key.value_or("-")) << r.name;
              }
        }
        ++checked;
      }
    }
  EXPECT_EQ(checked, 12);
}

}  // namespace
}  // namespace agifarm::emit::test
