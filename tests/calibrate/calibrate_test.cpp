// The speed model against the published measurements (data/gpu_measurements.yaml): the rows replay,
// the split holds, and the holdout error stays within the bound docs/benchmarks.md states.
#include "calibrate/calibrate.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <stdexcept>

namespace agifarm::calibrate {
namespace {

struct data {
  std::vector<measurement> rows;
  catalogues cat;
  std::vector<replay_case> cases;
};

const data& the_data() {
  static const data d = [] {
    data x;
    auto rows = load_measurements(std::string(AGIFARM_SOURCE_DIR) + "/data/gpu_measurements.yaml");
    if (!rows) throw std::runtime_error(rows.err().message);
    x.rows = std::move(rows).value();
    auto cat = load_default_catalogues();
    if (!cat) throw std::runtime_error(cat.err().message);
    x.cat = std::move(cat).value();
    x.cases = build_cases(x.rows, x.cat);
    return x;
  }();
  return d;
}

TEST(calibrate, every_row_with_a_replay_block_replays) {
  const auto& d = the_data();
  int replayed = 0;
  for (const auto& c : d.cases) {
    ASSERT_TRUE(c.row->calib.has_value()) << c.row->id << ": every row says how to replay it or why not";
    if (!c.row->calib->skip.empty()) continue;
    EXPECT_TRUE(c.skip.empty()) << c.row->id << ": " << c.skip;
    ++replayed;
  }
  EXPECT_GE(replayed, 40);
}

TEST(calibrate, the_split_leaves_enough_rows_on_each_side) {
  const auto r = evaluate(the_data().cases, default_calibration());
  const auto fit = summarize(r, split::fit), holdout = summarize(r, split::holdout);
  EXPECT_GE(fit.rows, 20);
  EXPECT_GE(holdout.rows, 15);
  std::set<std::string> setups;
  for (const auto& x : r)
    if (x.part == split::holdout && x.skip.empty()) setups.insert(x.setup);
  EXPECT_GE(setups.size(), 4u) << "full GPU, multi-GPU, expert offload and RPC rows in the holdout";
}

// Issue 15's goal on the holdout rows: decode within ±20 % and prefill within ±30 % for 80 % of
// them, none off by more than 2x. Met with the committed constants: 19 of 23 holdout rows (83 %)
// (docs/benchmarks.md says which rows miss and why, and how close to the line the goal sits: a refit
// from these constants, 0.4 % lower fit-row loss, scores 17 of 23).
TEST(calibrate, holdout_error_stays_within_the_achieved_bound) {
  const auto r = evaluate(the_data().cases, default_calibration());
  const auto holdout = summarize(r, split::holdout);
  EXPECT_EQ(holdout.off_2x, 0);
  EXPECT_GE(holdout.share_within(), 0.80) << format_report(r);
  EXPECT_LE(holdout.median_abs_decode, 0.12);   // 11.2 % (2026-12-06, 23 holdout rows)
  EXPECT_LE(holdout.median_abs_prefill, 0.15);  // 13.5 %
  const auto fit = summarize(r, split::fit);
  EXPECT_GE(fit.share_within(), 0.9) << format_report(r);
}

TEST(calibrate, the_default_constants_are_the_fit) {
  // Refitting from the committed constants on the fit rows must not find a clearly better fit: the
  // defaults are the fit's result (up to the 3 digits they are written with).
  const auto& cases = the_data().cases;
  const auto before = evaluate(cases, default_calibration());
  const auto after = evaluate(cases, fit(cases, default_calibration()));
  auto sq = [](const std::vector<row_result>& rs) {
    double l = 0;
    for (const auto& x : rs) {
      if (x.part != split::fit || !x.skip.empty() || x.outlier) continue;
      if (x.measured_decode > 0) l += std::pow(std::log(x.predicted_decode / x.measured_decode), 2);
      if (x.measured_prefill > 0) l += std::pow(std::log(x.predicted_prefill / x.measured_prefill), 2);
    }
    return l;
  };
  EXPECT_GE(sq(after), 0.9 * sq(before) - 1e-3);
}

TEST(calibrate, rows_that_cannot_replay_say_why) {
  std::vector<measurement> rows(2);
  rows[0].id = "unknown-gpu";
  rows[0].decode_tps = 10;
  rows[0].calib = replay{};
  rows[0].calib->model = "llama-3-8b";
  rows[0].calib->quant = "Q4_K_M";
  rows[0].calib->gpus = {"voodoo5"};
  rows[1] = rows[0];
  rows[1].id = "unknown-mix";
  rows[1].calib->gpus = {"rtx3090"};
  rows[1].calib->quant = "IQ1_S";
  const auto cases = build_cases(rows, the_data().cat);
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_NE(cases[0].skip.find("voodoo5"), std::string::npos) << cases[0].skip;
  EXPECT_NE(cases[1].skip.find("IQ1_S"), std::string::npos) << cases[1].skip;
}

TEST(calibrate, a_faster_gpu_generation_figure_raises_only_its_rows) {
  const auto& cases = the_data().cases;
  auto cal = default_calibration();
  const auto base = evaluate(cases, cal);
  for (auto& g : cal.speed.generations)
    if (g.generation == "ada") g.bw *= 1.1;
  const auto faster = evaluate(cases, cal);
  bool any = false;
  for (std::size_t i = 0; i < base.size(); ++i) {
    if (base[i].measured_decode <= 0) continue;
    if (base[i].id == "xd-4090-llama3-8b-q4km") {
      EXPECT_GT(faster[i].predicted_decode, base[i].predicted_decode * 1.05);
      any = true;
    }
    if (base[i].id == "xd-3090-llama3-8b-q4km") {
      EXPECT_DOUBLE_EQ(faster[i].predicted_decode, base[i].predicted_decode);
    }
  }
  EXPECT_TRUE(any);
}

}  // namespace
// The RPC logits term: one remote GTX 1660 holds every layer and the output of TinyLlama (pr6829), so
// each decoded token reads 4 x n_vocab bytes back over the 1 GbE link; the same placement with the
// device marked local costs exactly that much less per token. A row whose output stays on the local
// machine (the GB10 pair: the local GPU holds the last layers) is unchanged by the flag.
TEST(calibrate, logits_cross_the_network_when_the_output_layer_is_remote) {
  const replay_case* tiny = nullptr;
  for (const auto& c : the_data().cases)
    if (c.row->id == "pr6829-rpc-gigabit-1660-tinyllama-f16") tiny = &c;
  ASSERT_NE(tiny, nullptr);
  ASSERT_TRUE(tiny->skip.empty()) << tiny->skip;
  ASSERT_EQ(tiny->decode.devices.size(), 1u);
  ASSERT_TRUE(tiny->decode.devices[0].remote);
  auto local = tiny->decode;
  local.devices[0].remote = false;
  const double t_remote = 1 / plan::estimate_speed(tiny->decode).decode_tps;
  const double t_local = 1 / plan::estimate_speed(local).decode_tps;
  const double expected =
      4.0 * static_cast<double>(tiny->shape->n_vocab) / (1e9 / 8);  // 32000 x 4 B over 1 Gbit/s
  EXPECT_NEAR(t_remote - t_local, expected, 1e-9);
  EXPECT_NEAR(expected, 1.024e-3, 1e-6);

  for (const auto& c : the_data().cases) {
    if (c.row->id != "jp-gb10x2-rpc-1gbe-qwen3-235b-q2k-pp128") continue;
    ASSERT_TRUE(c.skip.empty()) << c.skip;
    auto all_local = c.decode;
    for (auto& d : all_local.devices) d.remote = false;
    EXPECT_DOUBLE_EQ(plan::estimate_speed(c.decode).decode_tps, plan::estimate_speed(all_local).decode_tps);
  }
}

}  // namespace agifarm::calibrate
