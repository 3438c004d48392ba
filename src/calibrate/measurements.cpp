#include "calibrate/measurements.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "hw/yaml_util.hpp"

namespace agifarm::calibrate {

using hw::detail::is_map;
using hw::detail::is_scalar;
using hw::detail::is_seq;
using hw::detail::yaml_error;
using hw::detail::yaml_reader;

namespace {

std::vector<std::string> strings(const yaml_reader& r, const YAML::Node& map, std::string_view key) {
  std::vector<std::string> out;
  if (!r.has(map, key)) return out;
  YAML::Node n = map[std::string(key)];
  if (!is_seq(n)) r.fail(n, key, "must be a list");
  for (const auto& item : n) {
    if (!is_scalar(item)) r.fail(item, key, "must be a list of scalars");
    out.push_back(item.Scalar());
  }
  return out;
}

// The tokens/s of a `prefill:` / `decode:` entry ({test, tps} or null).
double tps_of(const yaml_reader& r, const YAML::Node& row, std::string_view key) {
  if (!r.has(row, key)) return 0;
  YAML::Node n = row[std::string(key)];
  if (n.IsNull()) return 0;
  if (!is_map(n)) r.fail(n, key, "must be a mapping {test, tps} or null");
  return r.number(n, "tps", 0.001, 1e7);
}

replay parse_replay(const yaml_reader& r, const YAML::Node& c) {
  r.check_keys(c, "a calibrate block",
               {"model", "quant", "gpus", "nodes", "args", "prompt", "gen", "depth", "cpu", "network_gbit",
                "network_latency_ms", "use", "outlier", "skip", "why"});
  replay x;
  if (r.has(c, "skip")) {
    x.skip = r.str(c, "skip");
    if (x.skip.empty()) r.fail(c["skip"], "skip", "needs a reason");
    return x;
  }
  x.model = r.str(c, "model");
  x.quant = r.str(c, "quant");
  x.gpus = strings(r, c, "gpus");
  if (x.gpus.empty() || x.gpus.size() > 64) r.fail(c, "gpus", "needs 1 to 64 GPU ids");
  for (const auto& s : strings(r, c, "nodes")) {
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end || v < 0 || v > 64)
      r.fail(c["nodes"], "nodes", fmt::format("'{}' is not a machine index 0..64", s));
    x.nodes.push_back(static_cast<int>(v));
  }
  if (!x.nodes.empty() && x.nodes.size() != x.gpus.size())
    r.fail(c["nodes"], "nodes", "needs one machine per GPU");
  if (r.has(c, "args")) x.args = r.str(c, "args");
  if (r.has(c, "prompt")) x.prompt = r.integer(c, "prompt", 1, 1 << 20);
  if (r.has(c, "gen")) x.gen = r.integer(c, "gen", 1, 1 << 20);
  if (r.has(c, "depth")) x.depth = r.integer(c, "depth", 0, 1 << 22);
  if (r.has(c, "cpu")) x.cpu = r.str(c, "cpu");
  if (r.has(c, "network_gbit")) x.network_gbit = r.number(c, "network_gbit", 0.001, 1e5);
  if (r.has(c, "network_latency_ms")) x.network_latency_ms = r.number(c, "network_latency_ms", 0, 1e4);
  if (r.has(c, "use")) {
    const std::string u = r.str(c, "use");
    if (u == "decode")
      x.use_prefill = false;
    else if (u == "prefill")
      x.use_decode = false;
    else if (u != "both")
      r.fail(c["use"], "use", fmt::format("'{}' is not decode, prefill or both", u));
  }
  if (r.has(c, "outlier")) x.outlier = r.str(c, "outlier");
  if (r.has(c, "why")) x.why = r.str(c, "why");
  return x;
}

}  // namespace

result<std::vector<measurement>> parse_measurements(std::string_view yaml_text, std::string_view name) {
  yaml_reader r(name);
  try {
    const YAML::Node root = hw::detail::load_yaml(yaml_text, name);
    if (!is_map(root)) r.fail(root, "", "the file must be a mapping with a `measurements` list");
    YAML::Node rows = root["measurements"];
    if (!is_seq(rows)) r.fail(rows.IsDefined() ? rows : root, "measurements", "must be a list of rows");
    std::vector<measurement> out;
    for (const auto& row : rows) {
      if (!is_map(row)) r.fail(row, "measurements", "each row must be a mapping");
      measurement m;
      m.line = row.Mark().line + 1;
      m.id = r.str(row, "id");
      if (m.id.empty()) r.fail(row["id"], "id", "must not be empty");
      for (const auto& o : out)
        if (o.id == m.id) r.fail(row["id"], "id", fmt::format("'{}' is already used", m.id));
      if (r.has(row, "setup")) m.setup = r.str(row, "setup");
      if (r.has(row, "source")) m.source = r.str(row, "source");
      if (r.has(row, "date") && !row["date"].IsNull()) m.date = r.str(row, "date");
      if (r.has(row, "model")) {
        YAML::Node md = row["model"];
        if (!is_map(md)) r.fail(md, "model", "must be a mapping");
        if (r.has(md, "name")) m.model_name = r.str(md, "name");
      }
      m.prefill_tps = tps_of(r, row, "prefill");
      m.decode_tps = tps_of(r, row, "decode");
      if (r.has(row, "calibrate")) m.calib = parse_replay(r, row["calibrate"]);
      out.push_back(std::move(m));
    }
    return out;
  } catch (const yaml_error& e) {
    return make_error(e.message, 2);
  } catch (const YAML::Exception& e) {
    return make_error(fmt::format("{}:{}:{}: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg), 2);
  }
}

result<std::vector<measurement>> load_measurements(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("{}: cannot open the measurements file", path), 2);
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_measurements(ss.str(), path);
}

}  // namespace agifarm::calibrate
