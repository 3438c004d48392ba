#include "plan/planner.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "fixtures.hpp"
#include "plan/speed_model.hpp"

namespace agifarm::plan {
namespace {

constexpr std::uint64_t k_mib = 1024 * 1024;
constexpr std::uint64_t k_gib = 1024 * k_mib;

hw::inventory farm(int nodes, int gpus_per_node, std::uint64_t vram = 24 * k_gib) {
  hw::inventory inv;
  for (int n = 0; n < nodes; ++n) {
    hw::node nd;
    nd.name = "n" + std::to_string(n);
    nd.address = "10.0.0." + std::to_string(n + 1);
    nd.ram_bytes = 128 * k_gib;
    nd.ram_bandwidth_bytes_per_s = 50e9;
    nd.cpu_peak_flops = 1e12;
    nd.cpu_cores = 16;
    for (int g = 0; g < gpus_per_node; ++g) {
      hw::gpu x;
      x.name = "rtx3090";
      x.vendor = hw::gpu_vendor::nvidia;
      x.index = g;
      x.vram_bytes = vram;
      x.bandwidth_bytes_per_s = 936e9;
      x.fp16_tflops = 71;
      nd.gpus.push_back(x);
    }
    inv.nodes.push_back(nd);
  }
  return inv;
}

plan_model model(std::string name, model_shape s) {
  plan_model m;
  m.name = std::move(name);
  m.shape = std::move(s);
  return m;
}

TEST(speed_model, decode_is_bound_by_bytes_over_bandwidth) {
  // 32 layers of 128 MiB on one device of 1 TB/s: 4 GiB per token / (0.75 TB/s) + 32 layer overheads
  auto s = fixtures::make_shape(32, 128 * k_mib, 64 * k_mib);
  memory_estimate e;
  e.dense_weight_bytes = {32 * 128 * k_mib + 64 * k_mib, 0};
  e.expert_weight_bytes = {0, 0};
  e.layers_on_device = {32, 0};
  speed_input in;
  in.shape = &s;
  in.placement = &e;
  in.devices = {{"gpu", 1e12, 100e12, false}};
  in.host = {"host", 50e9, 1e12, true};
  auto r = estimate_speed(in);
  double expect_t = static_cast<double>(32 * 128 * k_mib + 64 * k_mib) / (1e12 * k_eta_bw_gpu) +
                    32 * default_speed_params().layer_overhead_gpu_s;  // the fitted per-layer cost
  EXPECT_NEAR(r.decode_tps, 1.0 / expect_t, 1e-6 * r.decode_tps);
  // four slots read the weights once per step: aggregate is close to four times single
  in.slots = 4;
  auto agg = estimate_speed(in);
  EXPECT_GT(agg.aggregate_decode_tps, 3.5 * r.decode_tps);
}

TEST(speed_model, moe_reads_only_the_used_experts_share) {
  auto s = fixtures::make_shape(4, 400 * k_mib, 8 * k_mib, 64);  // 8 of 64 experts used
  memory_estimate e;
  e.dense_weight_bytes = {4 * 100 * k_mib, 0};
  e.expert_weight_bytes = {4 * 300 * k_mib, 0};
  e.layers_on_device = {4, 0};
  speed_input in{&s, &e, {{"gpu", 1e12, 100e12, false}}, {"host", 50e9, 1e12, true}, {}, 1, 0};
  auto r = estimate_speed(in);
  EXPECT_NEAR(r.decode_bytes_per_token, 4.0 * 100 * k_mib + 4.0 * 300 * k_mib / 8, 1.0);
  // the same experts in system RAM are read at the host's bandwidth: much slower
  e.expert_weight_bytes = {0, 4 * 300 * k_mib};
  e.layers_on_device = {4, 0};
  auto slow = estimate_speed(in);
  EXPECT_LT(slow.decode_tps, r.decode_tps / 2);
}

// One CPU placement of a shape (everything on the host, output layer included).
memory_estimate all_on_host(const model_shape& s) {
  memory_estimate e;
  std::uint64_t dense = 0, expert = 0;
  for (const auto& t : s.tensors) {
    if (t.cls == gguf::tensor_class::ffn_expert)
      expert += t.bytes;
    else if (t.cls != gguf::tensor_class::token_embd)
      dense += t.bytes;
  }
  e.dense_weight_bytes = {dense};
  e.expert_weight_bytes = {expert};
  e.layers_on_device = {static_cast<int>(s.n_layer)};
  e.layer_device.assign(s.n_layer + 1, -1);
  return e;
}

TEST(speed_model, prefill_skips_the_output_matrix_decode_reads_it) {
  // Logits are computed for the last prompt token only: a bigger vocabulary slows decode, not prefill.
  auto small_vocab = fixtures::make_shape(8, 64 * k_mib, 16 * k_mib);
  auto big_vocab = fixtures::make_shape(8, 64 * k_mib, 256 * k_mib);
  auto e1 = all_on_host(small_vocab), e2 = all_on_host(big_vocab);
  compute_unit cpu{"cpu", 30e9, 300e9, true};
  auto a = estimate_speed({&small_vocab, &e1, {}, cpu, {}, 1, 0});
  auto b = estimate_speed({&big_vocab, &e2, {}, cpu, {}, 1, 0});
  EXPECT_NEAR(a.prefill_tps, b.prefill_tps, 1e-9 * a.prefill_tps);
  EXPECT_LT(b.decode_tps, a.decode_tps * 0.8);
  EXPECT_NEAR(b.decode_bytes_per_token - a.decode_bytes_per_token, 240.0 * k_mib, 1.0);
}

TEST(speed_model, cpu_prefill_speed_depends_on_the_weight_type) {
  // The same parameters as Q4_0 (repacked kernels) and as Q6_K: Q4_0 prefills faster on the CPU; on a
  // GPU (one efficiency for all types) the two take the same time per parameter.
  auto q4 = fixtures::make_shape(8, 64 * k_mib, 16 * k_mib);
  auto q6 = q4;
  for (auto& t : q4.tensors)
    if (t.type == 12) t.type = 2;  // Q4_0
  for (auto& t : q6.tensors)
    if (t.type == 12) t.type = 14;  // Q6_K
  auto e = all_on_host(q4);
  compute_unit cpu{"cpu", 30e9, 300e9, true};
  auto fast = estimate_speed({&q4, &e, {}, cpu, {}, 1, 0});
  auto slow = estimate_speed({&q6, &e, {}, cpu, {}, 1, 0});
  EXPECT_NEAR(fast.prefill_tps / slow.prefill_tps,
              cpu_matmul_efficiency("Q4_0") / cpu_matmul_efficiency("Q6_K"), 0.05);
  EXPECT_GT(cpu_matmul_efficiency("Q4_0"), cpu_matmul_efficiency("Q8_0"));
  EXPECT_GT(cpu_matmul_efficiency("Q8_0"), cpu_matmul_efficiency("Q6_K"));
  EXPECT_GT(cpu_matmul_efficiency("IQ2_XXS"), 0);  // unknown to the table: a conservative figure
}

TEST(speed_model, moe_experts_on_the_cpu_prefill_slower_than_dense_work) {
  auto moe = fixtures::make_shape(8, 64 * k_mib, 16 * k_mib, 64);
  auto e = all_on_host(moe);
  compute_unit cpu{"cpu", 30e9, 300e9, true};
  auto r = estimate_speed({&moe, &e, {}, cpu, {}, 1, 0});
  // attention (1/4 of the layer bytes) as dense work, experts (3/4, 8 of 64 used) slowed down
  double per_byte = 2.0 * 256.0 / 144.0 / cpu_matmul_efficiency("Q4_K");
  double t =
      8.0 * 16 * k_mib * per_byte / 300e9 + 8.0 * 48 * k_mib / 8 * per_byte * k_cpu_expert_slowdown / 300e9;
  EXPECT_NEAR(r.prefill_tps, 1.0 / t, 1e-3 / t);  // norms (vectors) ride along as dense bytes
}

TEST(speed_model, op_offload_streams_host_experts_over_the_link_once_per_micro_batch) {
  // 8 MoE layers, experts in system RAM, attention on the GPU. With op offload prefill is bound by
  // streaming the experts over PCIe once per micro-batch, not by the CPU; decode is unchanged.
  auto moe = fixtures::make_shape(8, 64 * k_mib, 16 * k_mib, 64);
  memory_estimate e;
  e.dense_weight_bytes = {8 * 16 * k_mib + 16 * k_mib, 0};
  e.expert_weight_bytes = {0, 8 * 48 * k_mib};
  e.layers_on_device = {8, 0};
  compute_unit gpu{"gpu", 936e9, 71e12, false};
  compute_unit cpu{"cpu", 50e9, 1e12, true};
  speed_input cpu_only{&moe, &e, {gpu}, cpu, {}, 1, 0};
  auto without = estimate_speed(cpu_only);
  speed_input off = cpu_only;
  off.offload_link_bytes_per_s = 31.5e9;  // PCIe 4.0 x16
  off.n_ubatch = 512;
  auto with = estimate_speed(off);
  EXPECT_GT(with.prefill_tps, 2 * without.prefill_tps);
  EXPECT_DOUBLE_EQ(with.decode_tps, without.decode_tps);
  // the streaming term: all experts cross the link once per micro-batch, so going from 512 to 4096
  // tokens per micro-batch saves exactly 7/8 of it (the compute per token stays); so does the GPU's
  // read of its own weights once per micro-batch
  // (the link's rate as calibrated: default_speed_params().eta_offload_link of its nominal rate)
  const double stream_bytes = 8.0 * 48 * k_mib;
  const double link = 31.5e9 * default_speed_params().eta_offload_link;
  const double gpu_bytes = static_cast<double>(e.dense_weight_bytes[0]);
  EXPECT_GT(1.0 / with.prefill_tps, stream_bytes / link / 512);
  off.n_ubatch = 4096;
  const double saved = 1.0 / with.prefill_tps - 1.0 / estimate_speed(off).prefill_tps;
  // (and each micro-batch is one graph evaluation: the GPU's 8 layers pay their dispatch cost per batch)
  EXPECT_NEAR(saved,
              (stream_bytes / link + gpu_bytes / (936e9 * k_eta_bw_gpu) +
               8 * default_speed_params().layer_overhead_gpu_s) *
                  (1.0 / 512 - 1.0 / 4096),
              1e-3 * saved);
  // below 32 tokens per micro-batch there is no op offload
  off.n_ubatch = 16;
  speed_input no_offload = cpu_only;
  no_offload.n_ubatch = 16;
  EXPECT_DOUBLE_EQ(estimate_speed(off).prefill_tps, estimate_speed(no_offload).prefill_tps);
}

TEST(planner, small_model_gets_replicas_one_per_gpu) {
  auto inv = farm(1, 4);
  std::vector<plan_model> models{model("small", fixtures::make_shape(28, 100 * k_mib, 300 * k_mib))};
  auto d = make_plan(inv, models, {{"fast", "small", 8192, 8}});
  ASSERT_TRUE(d.ok()) << d.err().message;
  ASSERT_TRUE(plan_fits(*d));
  EXPECT_EQ(d->chosen.strategy, "replica");
  EXPECT_EQ(d->chosen.backends.size(), 4u);
  EXPECT_EQ(d->chosen.pools.size(), 1u);
  EXPECT_EQ(d->chosen.pools[0].aliases, std::vector<std::string>{"fast"});
  const auto& b = d->chosen.backends[0];
  EXPECT_EQ(b.env.at("CUDA_VISIBLE_DEVICES"), "0");
  EXPECT_EQ(b.slots, 2);  // 8 agents over 4 copies
  ASSERT_TRUE(b.predicted.has_value());
  EXPECT_GT(b.predicted->decode_tps, 0);
  // the document round-trips through JSON
  auto back = plan_document_from_json(to_json(*d));
  ASSERT_TRUE(back.ok()) << back.err().message;
  EXPECT_EQ(back->chosen.backends.size(), 4u);
}

TEST(planner, recommendation_names_the_runner_up_and_its_margin) {
  auto inv = farm(1, 4);
  std::vector<plan_model> models{model("small", fixtures::make_shape(28, 100 * k_mib, 300 * k_mib))};
  auto d = make_plan(inv, models, {{"fast", "small", 8192, 8}});
  ASSERT_TRUE(d.ok()) << d.err().message;
  const auto& rec = d->recommendation;
  ASSERT_GE(rec.candidate, 0);
  ASSERT_GE(rec.runner_up_candidate, 0);
  const auto& won = d->candidates[rec.candidate];
  const auto& ru = d->candidates[rec.runner_up_candidate];
  EXPECT_NE(ru.strategy, won.strategy);
  EXPECT_EQ(rec.runner_up, ru.strategy);
  EXPECT_TRUE(ru.feasible);
  EXPECT_NEAR(rec.runner_up_gain, won.score / ru.score - 1.0, 1e-9);
  for (const auto& c : d->candidates) {  // no other strategy of this model scores higher than the runner-up
    if (c.feasible && c.strategy != won.strategy && c.model == won.model) {
      EXPECT_LE(c.score, ru.score);
    }
  }
  bool said = false;
  for (const auto& r : rec.reasons) said |= r.rfind("runner-up: " + ru.strategy, 0) == 0;
  EXPECT_TRUE(said);
  EXPECT_NE(format_plan(*d).find("runner-up: "), std::string::npos);
  auto back = plan_document_from_json(to_json(*d));
  ASSERT_TRUE(back.ok()) << back.err().message;
  EXPECT_EQ(back->recommendation.runner_up, rec.runner_up);
  EXPECT_EQ(back->recommendation.runner_up_candidate, rec.runner_up_candidate);
  EXPECT_DOUBLE_EQ(back->recommendation.runner_up_gain, rec.runner_up_gain);
}

TEST(planner, default_host_figures_are_stated_as_warnings) {
  auto inv = farm(1, 1);
  inv.nodes[0].ram_bandwidth_source = "catalogue";
  inv.nodes[0].cpu_peak_flops = 0;
  std::vector<plan_model> models{model("small", fixtures::make_shape(28, 100 * k_mib, 300 * k_mib))};
  auto d = make_plan(inv, models, {{"fast", "small", 8192, 1}});
  ASSERT_TRUE(d.ok()) << d.err().message;
  int defaults = 0;
  for (const auto& w : d->warnings)
    if (w.find("is a default") != std::string::npos) ++defaults;
  EXPECT_EQ(defaults, 2) << format_plan(*d);
}

TEST(planner, big_dense_model_is_sharded_over_the_node) {
  auto inv = farm(1, 4);
  // 64 layers x 600 MiB = 37.5 GiB: no single 24 GiB GPU holds it
  std::vector<plan_model> models{model("big", fixtures::make_shape(64, 600 * k_mib, 700 * k_mib))};
  auto d = make_plan(inv, models, {{"think", "big", 32768, 1}});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(plan_fits(*d));
  EXPECT_EQ(d->chosen.strategy, "shard");
  const auto& args = d->chosen.backends[0].args;
  EXPECT_NE(std::find(args.begin(), args.end(), "-ts"), args.end());
  bool replica_infeasible_with_reason = false;
  for (const auto& c : d->candidates)
    if (c.strategy == "replica" && !c.feasible && c.why_not.find("needs") != std::string::npos &&
        !c.fix.empty())
      replica_infeasible_with_reason = true;
  EXPECT_TRUE(replica_infeasible_with_reason);
}

TEST(planner, shards_across_nodes_with_rpc_servers) {
  auto inv = farm(3, 1);
  std::vector<plan_model> models{model("big", fixtures::make_shape(64, 800 * k_mib, 700 * k_mib))};  // 50 GiB
  auto d = make_plan(inv, models, {{"think", "big", 8192, 1}});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(plan_fits(*d));
  EXPECT_EQ(d->chosen.strategy, "shard_rpc");
  int rpc = 0;
  std::string server_rpc_arg;
  for (const auto& b : d->chosen.backends) {
    if (b.kind == backend_kind::rpc_server)
      ++rpc;
    else
      for (std::size_t i = 0; i + 1 < b.args.size(); ++i)
        if (b.args[i] == "--rpc") server_rpc_arg = b.args[i + 1];
  }
  EXPECT_EQ(rpc, 2);
  EXPECT_NE(server_rpc_arg.find("10.0.0."), std::string::npos);
}

TEST(planner, moe_too_big_for_vram_offloads_the_fewest_expert_layers) {
  auto inv = farm(1, 1);
  // 48 layers x 400 MiB (300 MiB experts) = 18.75 GiB + 6 GiB of KV at 32k: does not fit 24 GiB
  std::vector<plan_model> models{model("moe", fixtures::make_shape(48, 400 * k_mib, 300 * k_mib, 128))};
  auto d = make_plan(inv, models, {{"think", "moe", 32768, 1}});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(plan_fits(*d));
  EXPECT_EQ(d->chosen.strategy, "expert_offload");
  std::string ot;
  const auto& args = d->chosen.backends[0].args;
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "-ot") ot = args[i + 1];
  // one merged rule with llama.cpp's expert suffix (common/ot_rules), the form `up` and `emit` both run
  EXPECT_EQ(ot.rfind("blk\\.", 0), 0u) << ot;
  EXPECT_NE(ot.find("\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU"), std::string::npos) << ot;
  EXPECT_EQ(ot.find(','), std::string::npos) << ot;
  // fits its GPU with the margin
  const auto& pr = *d->chosen.backends[0].predicted;
  EXPECT_LE(pr.devices[0].total_bytes, 23 * k_gib);
}

TEST(planner, nothing_fits_says_why_and_what_would_fit) {
  auto inv = farm(1, 1, 8 * k_gib);
  inv.nodes[0].ram_bytes = 16 * k_gib;
  std::vector<plan_model> models{model("huge", fixtures::make_shape(80, 900 * k_mib, 1000 * k_mib))};
  auto d = make_plan(inv, models, {{"think", "huge", 32768, 1}});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(plan_fits(*d));
  ASSERT_FALSE(d->candidates.empty());
  for (const auto& c : d->candidates) {
    EXPECT_FALSE(c.feasible);
    EXPECT_FALSE(c.why_not.empty());
  }
  EXPECT_NE(format_plan(*d).find("no feasible plan"), std::string::npos);
}

TEST(planner, hybrid_places_core_and_helpers) {
  auto inv = farm(1, 4);
  std::vector<plan_model> models{model("big", fixtures::make_shape(64, 600 * k_mib, 700 * k_mib)),
                                 model("small", fixtures::make_shape(28, 100 * k_mib, 300 * k_mib))};
  auto d = make_plan(inv, models, {{"think", "big", 16384, 1}, {"fast", "small", 8192, 4}});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(plan_fits(*d));
  EXPECT_EQ(d->chosen.strategy, "hybrid");
  std::set<int> gpus;
  int big = 0, small = 0;
  for (const auto& b : d->chosen.backends) {
    for (int g : b.gpus) EXPECT_TRUE(gpus.insert(g).second) << "GPU " << g << " used twice";
    (b.model == "big" ? big : small) += 1;
  }
  EXPECT_EQ(big, 1);
  EXPECT_GE(small, 1);
  EXPECT_EQ(d->chosen.pools.size(), 2u);
}

TEST(planner, role_with_unknown_model_is_an_error) {
  auto inv = farm(1, 1);
  std::vector<plan_model> models{model("small", fixtures::make_shape(4, 10 * k_mib, 10 * k_mib))};
  auto d = make_plan(inv, models, {{"fast", "nope", 0, 0}});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.err().message.find("nope"), std::string::npos);
  EXPECT_EQ(d.err().exit_code, 2);
}

TEST(planner, unknown_architecture_plans_with_a_warning) {
  auto inv = farm(1, 1);
  auto s = fixtures::make_shape(8, 50 * k_mib, 50 * k_mib);
  s.architecture = "mamba9";
  s.known_architecture = false;
  s.warnings.push_back("architecture 'mamba9' is not one agifarm models exactly");
  auto d = make_plan(inv, {model("odd", s)}, {});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(plan_fits(*d));
  ASSERT_FALSE(d->warnings.empty());
  EXPECT_NE(d->warnings[0].find("mamba9"), std::string::npos);
}

}  // namespace
}  // namespace agifarm::plan
