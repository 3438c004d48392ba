// Measured memory kept per model and device kind (farm/memory_feedback) and the rule that sizes the next
// plan's margins from it (farm/memory_feedback_plan). Real files in a temporary directory.
#include "farm/memory_feedback.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "farm/memory_feedback_plan.hpp"
#include "farm/state.hpp"
#include "plan/deployment.hpp"

namespace agifarm::farm {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t MiB = 1ull << 20;

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("agifarm-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

memory_observation obs(std::string model, std::string kind, std::uint64_t pred, std::uint64_t meas,
                       std::string file = "") {
  return {std::move(model), std::move(file), kind, kind + "0", "b", pred, meas, 1};
}

hw::inventory one_gpu(hw::gpu_vendor v = hw::gpu_vendor::nvidia) {
  hw::inventory inv;
  hw::node n;
  hw::gpu g;
  g.name = "NVIDIA GeForce RTX 3090";
  g.vendor = v;
  g.vram_bytes = 24ull << 30;
  n.gpus.push_back(g);
  inv.nodes.push_back(n);
  return inv;
}

TEST(memory_feedback, device_kind_drops_index_and_address) {
  EXPECT_EQ(device_kind("CUDA0"), "CUDA");
  EXPECT_EQ(device_kind("CUDA12"), "CUDA");
  EXPECT_EQ(device_kind("RPC0[127.0.0.1:50052]"), "RPC");
  EXPECT_EQ(device_kind("host"), "host");
  EXPECT_EQ(device_kind("Vulkan1"), "Vulkan");
  EXPECT_EQ(device_kind("0"), "unknown");
}

TEST(memory_feedback, file_round_trips_and_bad_input_names_the_field) {
  memory_feedback f;
  note(f, obs("tiny", "host", 80 * MiB, 84 * MiB, "/m/tiny.gguf"));
  note(f, obs("big", "CUDA", 10ull << 30, 11ull << 30));
  auto back = parse_memory_feedback(to_json_text(f), "memory.json");
  ASSERT_TRUE(back) << back.err().message;
  ASSERT_EQ(back->observations.size(), 2u);
  EXPECT_EQ(back->observations[0].model_file, "/m/tiny.gguf");
  EXPECT_EQ(back->observations[1].measured_bytes, 11ull << 30);
  EXPECT_EQ(back->observations[1].diff_bytes(), 1ll << 30);

  auto err = [](std::string_view text) {
    auto r = parse_memory_feedback(text, "/s/memory.json");
    return r ? std::string("accepted") : r.err().message;
  };
  EXPECT_NE(err("{").find("/s/memory.json: not JSON"), std::string::npos);
  EXPECT_NE(err("[]").find("expected an object"), std::string::npos);
  EXPECT_NE(err(R"({"version":2,"observations":[]})").find("/s/memory.json.version: 2 is not supported"),
            std::string::npos);
  EXPECT_NE(err(R"({"version":1})").find("observations: expected an array"), std::string::npos);
  EXPECT_NE(
      err(R"({"version":1,"observations":[{"model":"m","device_kind":"host","predicted_bytes":1,"measured_bytes":-5,"wall":0}]})")
          .find("observations[0].measured_bytes: -5 is negative"),
      std::string::npos);
  EXPECT_NE(
      err(R"({"version":1,"observations":[{"model":"m","predicted_bytes":1,"measured_bytes":1,"wall":0}]})")
          .find("observations[0].device_kind: missing"),
      std::string::npos);
  EXPECT_NE(
      err(R"({"version":1,"observations":[{"model":3,"device_kind":"host","predicted_bytes":1,"measured_bytes":1,"wall":0}]})")
          .find("observations[0].model: expected a string"),
      std::string::npos);
}

TEST(memory_feedback, a_newer_observation_replaces_the_same_model_file_and_kind) {
  memory_feedback f;
  note(f, obs("tiny", "host", 80, 90));
  note(f, obs("tiny", "CUDA", 80, 90));
  note(f, obs("tiny", "host", 80, 70));
  ASSERT_EQ(f.observations.size(), 2u);
  EXPECT_EQ(f.observations[0].measured_bytes, 70u);
}

TEST(memory_feedback, observations_of_a_backend_keep_the_shortest_prediction_per_kind) {
  std::vector<device_memory_record> pred{{"CUDA0", 100, 10, 10},
                                         {"CUDA1", 100, 10, 10},
                                         {"RPC0[127.0.0.1:50052]", 50, 0, 0},
                                         {"host", 20, 0, 0}};
  std::vector<device_memory_record> meas{
      {"CUDA0", 100, 10, 15}, {"CUDA1", 100, 10, 40}, {"RPC0[127.0.0.1:40000]", 40, 0, 0}};
  auto o = observations_of("m", "/m.gguf", "m-r0", pred, meas, 7);
  ASSERT_EQ(o.size(), 2u);  // host was not measured: no observation for it
  EXPECT_EQ(o[0].device_kind, "CUDA");
  EXPECT_EQ(o[0].device, "CUDA1");
  EXPECT_EQ(o[0].diff_bytes(), 30);
  EXPECT_EQ(o[1].device_kind, "RPC");  // matched although the port differs
  EXPECT_EQ(o[1].diff_bytes(), -10);
  EXPECT_TRUE(observations_of("m", "", "m-r0", pred, {}, 7).empty());
}

TEST(memory_feedback, margins_shrink_when_right_grow_when_short_and_stay_bounded) {
  margin_rule rule;  // floor 512 MiB, safety 256 MiB, cap 8 GiB
  memory_feedback f;
  note(f, obs("right", "CUDA", 4000 * MiB, 3990 * MiB));
  note(f, obs("short", "ROCm", 4000 * MiB, 5000 * MiB));
  note(f, obs("wild", "Vulkan", 1 * MiB, 100ull << 30));
  note(f, obs("tiny", "host", 80 * MiB, 84 * MiB));
  note(f, obs("other", "CUDA", 1, 1ull << 40));  // not a model of this plan: ignored
  auto m = margins_from(f, {{"right", ""}, {"short", ""}, {"wild", ""}, {"tiny", ""}}, 4ull << 30, rule);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].device_kind, "CUDA");
  EXPECT_EQ(m[0].shortfall_bytes, 0u);
  EXPECT_EQ(m[0].margin_bytes, 512 * MiB);  // right: the floor, less than the default 1 GiB
  EXPECT_EQ(m[1].margin_bytes, 1000 * MiB + 256 * MiB);
  EXPECT_EQ(m[2].margin_bytes, 8ull << 30);  // capped
  EXPECT_EQ(m[3].device_kind, "host");
  EXPECT_EQ(m[3].margin_bytes, (4ull << 30) + 4 * MiB);  // the OS reserve plus what was missed
  // Two short models on one kind add up.
  memory_feedback two;
  note(two, obs("a", "CUDA", 100 * MiB, 300 * MiB));
  note(two, obs("b", "CUDA", 100 * MiB, 400 * MiB));
  auto t = margins_from(two, {{"a", ""}, {"b", ""}}, 0, rule);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].margin_bytes, 500 * MiB + 256 * MiB);
  // Files decide when both are known: the same name with another file is another model.
  memory_feedback files;
  note(files, obs("a", "CUDA", 100 * MiB, 900 * MiB, "/x/a.gguf"));
  EXPECT_TRUE(margins_from(files, {{"a", "/y/a.gguf"}}, 0, rule).empty());
  EXPECT_EQ(margins_from(files, {{"renamed", "/x/a.gguf"}}, 0, rule).size(), 1u);
}

TEST(memory_feedback, apply_sets_the_planner_options_and_says_so) {
  auto dir = temp_dir("memfb-apply");
  auto file = memory_feedback_file(dir);
  plan::plan_options opt;
  EXPECT_TRUE(apply_memory_feedback(file, {{"m", ""}}, one_gpu(), opt).empty()) << "no file: nothing to say";
  EXPECT_EQ(opt.device_margin_bytes, 1ull << 30);

  memory_feedback f;
  note(f, obs("m", "CUDA", 4000 * MiB, 4300 * MiB));
  note(f, obs("m", "host", 100 * MiB, 90 * MiB));
  ASSERT_TRUE(save_memory_feedback(file, f));
  auto lines = apply_memory_feedback(file, {{"m", ""}}, one_gpu(), opt);
  EXPECT_EQ(opt.device_margin_bytes, 300 * MiB + 256 * MiB);
  EXPECT_EQ(opt.host_reserve_bytes, 4ull << 30);  // host was over-predicted: the OS reserve stays
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  EXPECT_NE(
      all.find("used measured memory from " + file + ": model m on CUDA measured +300.0 MiB vs predicted"),
      std::string::npos)
      << all;
  EXPECT_NE(all.find("CUDA margin 556 MiB (was 1024 MiB"), std::string::npos) << all;

  // An AMD box does not take a CUDA measurement; one unmeasured kind keeps the default for all GPUs.
  plan::plan_options amd;
  apply_memory_feedback(file, {{"m", ""}}, one_gpu(hw::gpu_vendor::amd), amd);
  EXPECT_EQ(amd.device_margin_bytes, 1ull << 30);
  auto mixed = one_gpu();
  mixed.nodes[0].gpus.push_back(one_gpu(hw::gpu_vendor::amd).nodes[0].gpus[0]);
  plan::plan_options mix;
  note(f, obs("m", "CUDA", 4000 * MiB, 3000 * MiB));  // now right on CUDA: floor 512 MiB, but ROCm unmeasured
  ASSERT_TRUE(save_memory_feedback(file, f));
  apply_memory_feedback(file, {{"m", ""}}, mixed, mix);
  EXPECT_EQ(mix.device_margin_bytes, 1ull << 30);
  plan::plan_options cuda_only;
  apply_memory_feedback(file, {{"m", ""}}, one_gpu(), cuda_only);
  EXPECT_EQ(cuda_only.device_margin_bytes, 512 * MiB);

  // A broken file: one line naming it, options untouched.
  std::ofstream(file) << "{\"version\":1,\"observations\":[{]}";
  plan::plan_options broken;
  auto b = apply_memory_feedback(file, {{"m", ""}}, one_gpu(), broken);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_NE(b[0].find(file), std::string::npos) << b[0];
  EXPECT_EQ(broken.device_margin_bytes, 1ull << 30);
  fs::remove_all(dir);
}

TEST(memory_feedback, a_running_farm_stores_each_start_once) {
  auto dir = temp_dir("memfb-remember");
  auto file = memory_feedback_file(dir);
  plan::deployment d;
  plan::backend_spec spec;
  spec.name = "tiny-r0";
  spec.model = "tiny";
  spec.model_file = dir + "/tiny.gguf";
  d.backends.push_back(spec);
  backend_record r;
  r.name = "tiny-r0";
  r.kind = "llama-server";
  r.model = "tiny";
  r.started_wall = 1000;
  r.predicted_devices = {{"host", 80 * MiB, 1 * MiB, 1 * MiB}};
  EXPECT_TRUE(remember_measured_memory(file, d, {r}).empty()) << "nothing measured yet";
  EXPECT_FALSE(fs::exists(file));
  r.measured_devices = {{"host", 80 * MiB, 1 * MiB, 5 * MiB}};
  auto lines = remember_measured_memory(file, d, {r});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("tiny-r0: model tiny on host measured +4.0 MiB"), std::string::npos) << lines[0];
  auto f = load_memory_feedback(file);
  ASSERT_TRUE(f) << f.err().message;
  ASSERT_EQ(f->observations.size(), 1u);
  EXPECT_EQ(f->observations[0].model_file, fs::weakly_canonical(spec.model_file).string());
  EXPECT_EQ(f->observations[0].measured_bytes, 86 * MiB);
  EXPECT_TRUE(remember_measured_memory(file, d, {r}).empty()) << "the same start again";
  r.started_wall = 2000;  // restarted: measured again
  r.measured_devices = {{"host", 80 * MiB, 1 * MiB, 1 * MiB}};
  EXPECT_EQ(remember_measured_memory(file, d, {r}).size(), 1u);
  EXPECT_EQ(load_memory_feedback(file)->observations[0].measured_bytes, 82 * MiB);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace agifarm::farm
