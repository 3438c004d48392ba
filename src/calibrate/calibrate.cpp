#include "calibrate/calibrate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "gguf/gguf.hpp"
#include "gguf/writer.hpp"
#include "plan/devices.hpp"
#include "plan/server_args.hpp"
#include "synth/shape.hpp"

namespace agifarm::calibrate {

split split_of(std::string_view id) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : id) {
    h ^= c;
    h *= 16777619u;
  }
  return h % 3 == 0 ? split::holdout : split::fit;
}

std::string_view to_string(split s) { return s == split::fit ? "fit" : "holdout"; }

result<catalogues> load_default_catalogues() {
  catalogues c;
  auto models = synth::load_model_catalogue(synth::default_catalogue_path());
  if (!models) return models.err();
  c.models = std::move(models).value();
  auto hardware = hw::load_default_catalogue();
  if (!hardware) return hardware.err();
  c.hardware = std::move(hardware).value();
  return c;
}

namespace {

// The shape of a catalogue model in a mix, without writing a file: the header agifarm would write,
// parsed back (no tokenizer: only the tensors matter here).
result<plan::model_shape> shape_of(const synth::model_entry& m, synth::quant_mix mix) {
  auto tensors = synth::shape_tensors(m, mix);
  if (!tensors) return tensors.err();
  gguf::writer_input in;
  in.metadata = synth::shape_metadata(m, mix);
  in.tensors = std::move(tensors).value();
  auto header = gguf::serialize_header(in);
  if (!header) return header.err();
  gguf::read_options ro;
  ro.check_data_extent = false;
  auto file = gguf::parse(header->bytes, m.id, ro);
  if (!file) return file.err();
  gguf::model model;
  model.parts.push_back(std::move(file).value());
  auto shape = plan::model_shape_of(model);
  shape.file = m.id;
  return shape;
}

std::vector<std::string> split_args(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// The host of a row that does not name its CPU: these are 2025-26 rows of MoE models that need 64 GB+
// of RAM; the common desktop of that time is dual-channel DDR5-5600.
constexpr double k_default_host_bw = 89.6e9;
constexpr double k_default_host_flops = 500e9;

}  // namespace

std::vector<replay_case> build_cases(const std::vector<measurement>& rows, const catalogues& cat) {
  std::vector<replay_case> out;
  std::map<std::string, std::shared_ptr<const plan::model_shape>> shapes;  // model/quant -> shape
  for (const auto& row : rows) {
    replay_case c;
    c.row = &row;
    auto skip = [&](std::string why) {
      c.skip = std::move(why);
      out.push_back(std::move(c));
    };
    if (!row.calib) {
      skip("no calibrate block");
      continue;
    }
    const replay& x = *row.calib;
    if (!x.skip.empty()) {
      skip(x.skip);
      continue;
    }
    // the model
    const std::string key = x.model + "/" + x.quant;
    if (!shapes.count(key)) {
      auto entry = synth::find_model(cat.models, x.model);
      auto mix = synth::parse_quant_mix(x.quant);
      if (!entry || !mix) {
        skip(!entry ? entry.err().message
                    : fmt::format("quant mix '{}' is not one agifarm lays out", x.quant));
        continue;
      }
      auto s = shape_of(*entry, *mix);
      if (!s) {
        skip(s.err().message);
        continue;
      }
      shapes[key] = std::make_shared<const plan::model_shape>(std::move(s).value());
    }
    c.shape = shapes[key];
    // the devices, llama.cpp order: RPC devices (machines other than 0) first
    std::vector<plan::device_desc> devs;
    std::vector<plan::compute_unit> units;
    std::vector<int> node_of;
    const hw::gpu_spec* first = nullptr;
    std::string unknown;
    int cuda = 0, rocm = 0, rpc = 0;
    for (std::size_t i = 0; i < x.gpus.size(); ++i) {
      const hw::gpu_spec* g = cat.hardware.find(x.gpus[i]);
      if (!g) {
        unknown = x.gpus[i];
        break;
      }
      if (!first) first = g;
      const int node = x.nodes.empty() ? 0 : x.nodes[i];
      plan::device_desc d;
      if (node != 0) {
        d.name = fmt::format("RPC{}", rpc);
        d.buffer_names = {fmt::format("RPC{}[10.0.0.{}:50052]", rpc, node), d.name};
        ++rpc;
      } else {
        d.name = fmt::format("{}{}", plan::backend_name(g->vendor),
                             g->vendor == hw::gpu_vendor::amd ? rocm++ : cuda++);
        d.buffer_names = {d.name};
      }
      d.free_bytes = g->vram_bytes;
      d.offloads_ops = true;
      devs.push_back(std::move(d));
      units.push_back({g->id, g->bandwidth_bytes_per_s, g->fp16_tflops * 1e12, false, g->generation});
      units.back().remote = node != 0;
      node_of.push_back(node);
    }
    if (!unknown.empty()) {
      skip(fmt::format("GPU '{}' is not in data/gpus.yaml", unknown));
      continue;
    }
    // the placement
    const long ctx = std::max<long>(4096, (static_cast<long>(x.depth) + x.prompt + x.gen + 255) / 256 * 256);
    std::vector<std::string> argv{"-m", c.shape->file, "-c", std::to_string(ctx), "-np", "1", "-ngl", "99"};
    for (auto& a : split_args(x.args)) argv.push_back(std::move(a));
    auto args = plan::parse_server_args(argv);
    if (!args) {
      skip(args.err().message);
      continue;
    }
    auto est = plan::estimate_memory(*c.shape, *args, devs);
    if (!est) {
      skip(est.err().message);
      continue;
    }
    c.placement = std::make_shared<const plan::memory_estimate>(std::move(est).value());
    // the host
    plan::compute_unit host{"host", k_default_host_bw, k_default_host_flops, true, ""};
    if (!x.cpu.empty()) {
      const hw::cpu_model_spec* cpu = nullptr;
      for (const auto& s : cat.hardware.cpus)
        if (s.id == x.cpu) cpu = &s;
      if (!cpu) {
        skip(fmt::format("CPU '{}' is not in data/cpus.yaml", x.cpu));
        continue;
      }
      host = {cpu->id, cpu->bandwidth_bytes_per_s, cpu->peak_flops(), true, ""};
    }
    plan::speed_input si;
    si.shape = c.shape.get();
    si.placement = c.placement.get();
    si.devices = units;
    si.host = host;
    si.slots = 1;
    si.n_ubatch = args->n_ubatch;
    hw::gpu first_gpu;
    first_gpu.pcie_gen = first->pcie_gen;
    first_gpu.pcie_lanes = first->pcie_lanes;
    si.offload_link_bytes_per_s =
        node_of[0] == 0 ? hw::gpu_pcie_link("row", first_gpu).bandwidth_bytes_per_s : 0;
    // hops: a boundary between devices; RPC when either side is on another machine, and the last
    // remote device's return to machine 0
    const double net_bw = (x.network_gbit > 0 ? x.network_gbit : hw::k_default_ethernet_gbit) * 1e9 / 8;
    const double net_lat =
        x.network_latency_ms > 0 ? x.network_latency_ms * 1e-3 : hw::k_default_ethernet_latency_s;
    const double pcie_bw = hw::pcie_bandwidth_bytes_per_s(first->pcie_gen, first->pcie_lanes);
    bool any_remote = false;
    for (std::size_t i = 0; i < node_of.size(); ++i) {
      if (node_of[i] != 0) any_remote = true;
      if (i + 1 == node_of.size()) break;
      if (node_of[i] != 0 || node_of[i + 1] != 0)
        si.hops.push_back({net_bw, net_lat, true});
      else
        si.hops.push_back({pcie_bw, hw::k_default_pcie_latency_s, false});
    }
    if (any_remote) si.hops.push_back({net_bw, net_lat, true});
    if (args->split == plan::split_mode::row && units.size() > 1) {
      si.row_split = true;
      si.row_link = {pcie_bw, hw::k_default_pcie_latency_s, false};
    }
    c.prefill = si;
    c.prefill.depth = x.prompt / 2.0;
    c.prefill.n_ubatch = std::min(args->n_ubatch, x.prompt);  // a shorter prompt is one smaller micro-batch
    c.decode = si;
    c.decode.depth = x.depth + x.gen / 2.0;
    c.legacy = is_legacy_build(row.date);
    out.push_back(std::move(c));
  }
  return out;
}

bool row_result::within_goal() const {
  if (measured_decode > 0 && std::fabs(decode_error()) > 0.20) return false;
  if (measured_prefill > 0 && std::fabs(prefill_error()) > 0.30) return false;
  return measured_decode > 0 || measured_prefill > 0;
}

bool row_result::off_2x() const {
  auto off = [](double p, double m) { return m > 0 && (p > 2 * m || p < m / 2); };
  return off(predicted_decode, measured_decode) || off(predicted_prefill, measured_prefill);
}

bool is_legacy_build(std::string_view date) { return !date.empty() && date.substr(0, 7) < "2024-05"; }

calibration default_calibration() {
  calibration c;
  c.speed = plan::default_speed_params();
  c.legacy_overhead = 2.3;  // fitted with the speed constants (agifarm calibrate --fit)
  c.legacy_flops = 0.958;   // near 1: the dequantize-to-F16 traffic explains those builds' prefill
  return c;
}

std::vector<row_result> evaluate(const std::vector<replay_case>& cases, const calibration& cal) {
  std::vector<row_result> out;
  plan::speed_params legacy = cal.speed;
  legacy.layer_overhead_gpu_s *= cal.legacy_overhead;
  legacy.dequant_to_f16 = true;  // int8 tensor-core MMQ became llama.cpp's default in mid 2024
  for (auto& g : legacy.generations) g.flops *= cal.legacy_flops;
  legacy.eta_flops_gpu *= cal.legacy_flops;
  for (const auto& c : cases) {
    const plan::speed_params& params = c.legacy ? legacy : cal.speed;
    row_result r;
    r.id = c.row->id;
    r.setup = c.row->setup;
    r.part = split_of(r.id);
    r.skip = c.skip;
    if (c.skip.empty()) {
      const replay& x = *c.row->calib;
      r.outlier = !x.outlier.empty();
      plan::speed_input pi = c.prefill, di = c.decode;
      pi.params = di.params = &params;
      if (x.use_prefill && c.row->prefill_tps > 0) {
        r.measured_prefill = c.row->prefill_tps;
        r.predicted_prefill = plan::estimate_speed(pi).prefill_tps;
      }
      if (x.use_decode && c.row->decode_tps > 0) {
        r.measured_decode = c.row->decode_tps;
        r.predicted_decode = plan::estimate_speed(di).decode_tps;
      }
      if (r.measured_prefill == 0 && r.measured_decode == 0) r.skip = "no figure to compare";
    }
    out.push_back(std::move(r));
  }
  return out;
}

namespace {
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
}  // namespace

summary summarize(const std::vector<row_result>& results, split part) {
  summary s;
  std::vector<double> dec, pre;
  for (const auto& r : results) {
    if (r.part != part || !r.skip.empty() || r.outlier) continue;
    ++s.rows;
    if (r.within_goal()) ++s.within;
    if (r.off_2x()) ++s.off_2x;
    if (r.measured_decode > 0) dec.push_back(std::fabs(r.decode_error()));
    if (r.measured_prefill > 0) pre.push_back(std::fabs(r.prefill_error()));
  }
  s.median_abs_decode = median(dec);
  s.median_abs_prefill = median(pre);
  return s;
}

namespace {

// The free constants, as (name, pointer) into one speed_params.
struct knob {
  std::string name;
  double* value;
  double lo, hi;
  double prior = 0;  // > 0: the fit pays k_ridge * log(value / prior)^2 to move away from it
};

// Per-generation and per-type factors rest on one to four rows each: a ridge in log space keeps a
// factor near the generic figure unless its rows insist (chosen before looking at the holdout rows).
constexpr double k_ridge = 0.3;
using plan::k_eta_bw_gpu;
using plan::k_eta_flops_gpu;

std::vector<knob> knobs_of(calibration& cal) {
  std::vector<knob> k;
  plan::speed_params& p = cal.speed;
  k.push_back({"legacy_overhead", &cal.legacy_overhead, 0.5, 10});
  k.push_back({"legacy_flops", &cal.legacy_flops, 0.2, 2});
  for (auto& g : p.generations) {
    k.push_back({"bw." + g.generation, &g.bw, 0.3, 1.0, k_eta_bw_gpu});
    k.push_back({"flops." + g.generation, &g.flops, 0.02, 1.5, k_eta_flops_gpu});
  }
  for (auto& t : p.gpu_types) k.push_back({"type." + t.type, &t.factor, 0.2, 5, 1.0});
  k.push_back({"gpu_expert_flops", &p.gpu_expert_flops, 0.05, 2});
  k.push_back({"layer_overhead_gpu_s", &p.layer_overhead_gpu_s, 1e-6, 400e-6});
  k.push_back({"eta_host_expert", &p.eta_host_expert, 0.2, 1.2});
  k.push_back({"host_expert_layer_s", &p.host_expert_layer_s, 1e-6, 2e-3});
  k.push_back({"eta_offload_link", &p.eta_offload_link, 0.2, 1.5});
  k.push_back({"gpu_hop_s", &p.gpu_hop_s, 1e-6, 5e-3});
  k.push_back({"rpc_hop_s", &p.rpc_hop_s, 1e-5, 50e-3});
  k.push_back({"rpc_round_trips", &p.rpc_round_trips, 1, 20});
  k.push_back({"rpc_prefill_bytes", &p.rpc_prefill_bytes, 1, 400});
  k.push_back({"row_layer_sync_s", &p.row_layer_sync_s, 1e-7, 1e-3});
  k.push_back({"row_prefill_factor", &p.row_prefill_factor, 0.2, 10});
  k.push_back({"gpu_expert_bw", &p.gpu_expert_bw, 0.3, 1.5});
  return k;
}

double loss(const std::vector<replay_case>& fit_cases, calibration& p) {
  double l = 0;
  for (const auto& k : knobs_of(p))
    if (k.prior > 0) l += k_ridge * std::pow(std::log(*k.value / k.prior), 2);
  for (const auto& r : evaluate(fit_cases, p)) {
    if (!r.skip.empty()) continue;
    if (r.measured_decode > 0)
      l += std::pow(std::log(std::max(1e-9, r.predicted_decode) / r.measured_decode), 2);
    if (r.measured_prefill > 0)
      l += std::pow(std::log(std::max(1e-9, r.predicted_prefill) / r.measured_prefill), 2);
  }
  return l;
}

}  // namespace

calibration fit(const std::vector<replay_case>& cases, const calibration& start) {
  std::vector<replay_case> fit_cases;
  for (const auto& c : cases)
    if (c.skip.empty() && split_of(c.row->id) == split::fit && c.row->calib && c.row->calib->outlier.empty())
      fit_cases.push_back(c);
  calibration p = start;
  auto knobs = knobs_of(p);
  for (auto& k : knobs) *k.value = std::clamp(*k.value, k.lo, k.hi);
  double best = loss(fit_cases, p);
  for (double step : {2.0, 1.4, 1.15, 1.05, 1.01}) {
    for (int round = 0; round < 12; ++round) {
      bool moved = false;
      for (auto& k : knobs) {
        for (double f : {step, 1.0 / step}) {
          const double old = *k.value;
          const double v = std::clamp(old * f, k.lo, k.hi);
          if (v == old) continue;
          *k.value = v;
          const double l = loss(fit_cases, p);
          if (l < best - 1e-12) {
            best = l;
            moved = true;
            break;
          }
          *k.value = old;
        }
      }
      if (!moved) break;
    }
  }
  return p;
}

std::string format_report(const std::vector<row_result>& results) {
  std::string out;
  auto pct = [](double e) { return fmt::format("{:+.0f}%", 100 * e); };
  for (split part : {split::fit, split::holdout}) {
    out += fmt::format("{} rows\n", to_string(part));
    out += fmt::format("  {:<52} {:<16} {:>9} {:>9} {:>6}   {:>8} {:>8} {:>6}\n", "id", "setup", "pp pred",
                       "pp meas", "err", "tg pred", "tg meas", "err");
    for (const auto& r : results) {
      if (r.part != part || !r.skip.empty()) continue;
      auto cell = [&](double p, double m, double e) {
        return m > 0 ? fmt::format("{:>9.1f} {:>9.1f} {:>6}", p, m, pct(e))
                     : fmt::format("{:>9} {:>9} {:>6}", "-", "-", "");
      };
      out +=
          fmt::format("  {:<52} {:<16} {}   {}{}{}\n", r.id, r.setup,
                      cell(r.predicted_prefill, r.measured_prefill, r.prefill_error()),
                      cell(r.predicted_decode, r.measured_decode, r.decode_error()),
                      r.within_goal() ? "" : "  (outside goal)", r.outlier ? "  [outlier, not counted]" : "");
    }
    const auto s = summarize(results, part);
    out += fmt::format(
        "  {}: {} of {} rows within the goal ({:.0f}%), {} off by more than 2x; median |error| decode "
        "{:.0f}%, "
        "prefill {:.0f}%\n\n",
        to_string(part), s.within, s.rows, 100 * s.share_within(), s.off_2x, 100 * s.median_abs_decode,
        100 * s.median_abs_prefill);
  }
  out += "not replayed\n";
  for (const auto& r : results)
    if (!r.skip.empty()) out += fmt::format("  {:<52} {}\n", r.id, r.skip);
  return out;
}

std::string format_params(const calibration& cal) {
  const plan::speed_params& p = cal.speed;
  std::string out = "generations (decode bandwidth share, prefill FP16-peak share):\n";
  for (const auto& g : p.generations)
    out += fmt::format("  {{\"{}\", {:.3g}, {:.3g}}},\n", g.generation, g.bw, g.flops);
  out += "GPU prefill speed by weight type, relative to Q4_K:\n";
  for (const auto& t : p.gpu_types) out += fmt::format("  {{\"{}\", {:.3g}}},\n", t.type, t.factor);
  out += fmt::format(
      "gpu_expert_flops {:.3g}\nlayer_overhead_gpu_s {:.3g}\neta_host_expert {:.3g}\nhost_expert_layer_s "
      "{:.3g}\n"
      "eta_offload_link {:.3g}\ngpu_hop_s {:.3g}\nrpc_hop_s {:.3g}\nrpc_round_trips "
      "{:.3g}\nrpc_prefill_bytes {:.3g}\n"
      "row_layer_sync_s {:.3g}\nrow_prefill_factor {:.3g}\ngpu_expert_bw {:.3g}\n",
      p.gpu_expert_flops, p.layer_overhead_gpu_s, p.eta_host_expert, p.host_expert_layer_s,
      p.eta_offload_link, p.gpu_hop_s, p.rpc_hop_s, p.rpc_round_trips, p.rpc_prefill_bytes,
      p.row_layer_sync_s, p.row_prefill_factor, p.gpu_expert_bw);
  out += fmt::format("builds before May 2024: layer overhead x{:.3g}, prefill efficiency x{:.3g}\n",
                     cal.legacy_overhead, cal.legacy_flops);
  return out;
}

}  // namespace agifarm::calibrate
