#include "bench/driver.hpp"

#include <fmt/format.h>

#include <boost/asio.hpp>
#include <ctime>

namespace agifarm::bench {
namespace net = boost::asio;
namespace json = boost::json;

result<farm_models> parse_models(std::string_view body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object())
    return make_error(fmt::format("/v1/models: not a JSON object ({})", ec ? ec.message() : "wrong type"), 1);
  auto* data = v.get_object().if_contains("data");
  if (!data || !data->is_array()) return make_error("/v1/models: no \"data\" array", 1);
  farm_models out;
  for (const auto& e : data->get_array()) {
    auto* o = e.if_object();
    if (!o || !o->contains("id") || !o->at("id").is_string())
      return make_error("/v1/models: an entry without a string \"id\"", 1);
    std::string id(o->at("id").get_string());
    std::string root = id;
    if (auto* r = o->if_contains("root"); r && r->is_string() && !r->get_string().empty())
      root = std::string(r->get_string());
    out.pool_of[id] = root;
    if (root == id) out.pools.push_back(id);
  }
  // A server that names roots not listed as ids (plain llama-server): those roots are its pools.
  for (const auto& [id, root] : out.pool_of)
    if (!out.pool_of.contains(root) && std::find(out.pools.begin(), out.pools.end(), root) == out.pools.end())
      out.pools.push_back(root);
  if (out.pools.empty()) return make_error("/v1/models: the farm lists no models", 1);
  return out;
}

result<workload_targets> choose_targets(const farm_models& m, const std::vector<std::string>& models) {
  workload_targets t;
  if (!models.empty()) {
    for (const auto& x : models)
      if (!m.pool_of.contains(x)) {
        std::string known;
        for (const auto& [id, root] : m.pool_of) known += (known.empty() ? "" : ", ") + id;
        return make_error(
            fmt::format("--model '{}': the farm has no such model or alias (it has: {})", x, known), 2);
      }
    t.chat = t.agents = t.long_context = models;
    return t;
  }
  auto pick = [&](const char* alias) {
    if (m.pool_of.contains(alias)) return std::vector<std::string>{alias};
    return m.pools;
  };
  t.chat = pick("fast");
  t.agents = pick("code");
  t.long_context = pick("think");
  return t;
}

namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

}  // namespace

result<bench_run> run_bench(const bench_options& o) {
  if (o.duration_s <= 0) return make_error("--duration must be > 0 seconds", 2);
  if (o.concurrency < 1) return make_error("--concurrency must be >= 1", 2);
  auto models = http_get(o.ep, "/v1/models", std::chrono::seconds(10));
  if (!models) return models.err();
  if (models->status == 401 || models->status == 403)
    return make_error(fmt::format("{}/v1/models answered {}: give an API key (--api-key or $AGIFARM_API_KEY)",
                                  o.ep.url(), models->status),
                      1);
  if (models->status != 200)
    return make_error(
        fmt::format("{}/v1/models answered HTTP {}: is this an OpenAI endpoint?", o.ep.url(), models->status),
        1);
  auto fm = parse_models(models->body);
  if (!fm) return make_error(fmt::format("{}{}", o.ep.url(), fm.err().message), 1);
  auto targets = o.every_pool ? choose_targets(*fm, fm->pools) : choose_targets(*fm, o.models);
  if (!targets) return targets.err();

  bench_run run;
  run.url = o.ep.url();
  run.workload = std::string(workload_name(o.workload.kind));
  run.duration_s = o.duration_s;
  run.concurrency = o.concurrency;
  run.seed = o.workload.seed;
  run.started_utc = utc_now();
  run.targets = *targets;

  workload wl(o.workload, *targets);
  net::io_context io;
  auto t0 = clock_type::now();
  auto deadline =
      t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.duration_s));
  std::size_t issued = 0;
  auto worker = [&](int id) -> net::awaitable<void> {
    while (clock_type::now() < deadline && (o.max_requests == 0 || issued < o.max_requests)) {
      ++issued;
      auto spec = wl.next(id);
      std::string text;
      auto rec = co_await stream_chat(o.ep, spec, t0, o.request_timeout, &text, o.workload.reply_keep_bytes);
      auto it = fm->pool_of.find(spec.model);
      rec.pool = it != fm->pool_of.end() ? it->second : (fm->pools.size() == 1 ? fm->pools.front() : "");
      wl.reply(id, rec.ok, text);
      run.records.push_back(std::move(rec));
    }
  };
  for (int i = 0; i < o.concurrency; ++i) net::co_spawn(io, worker(i), net::detached);
  io.run();
  double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
  run.sum = summarize(run.records, wall);
  return run;
}

json::object to_json(const bench_run& r) {
  json::object o;
  o["url"] = r.url;
  o["workload"] = r.workload;
  o["duration_s"] = r.duration_s;
  o["concurrency"] = r.concurrency;
  o["seed"] = r.seed;
  o["started_utc"] = r.started_utc;
  auto arr = [](const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) a.push_back(json::value(s));
    return a;
  };
  o["targets"] = json::object{{"chat", arr(r.targets.chat)},
                              {"agents", arr(r.targets.agents)},
                              {"long", arr(r.targets.long_context)}};
  auto s = to_json(r.sum);
  for (auto& [k, v] : s) o[k] = v;
  json::array reqs;
  for (const auto& x : r.records) {
    json::object q{{"pool", x.pool},
                   {"model", x.model},
                   {"kind", x.kind},
                   {"start_s", x.start_s},
                   {"end_s", x.end_s},
                   {"ok", x.ok},
                   {"ttft_s", x.ttft_s},
                   {"prompt_tokens", x.prompt_tokens},
                   {"completion_tokens", x.completion_tokens},
                   {"chunks", x.chunks}};
    if (!x.ok) {
      q["error"] = x.error;
      q["error_detail"] = x.error_detail.substr(0, 300);
    }
    reqs.push_back(std::move(q));
  }
  o["requests"] = std::move(reqs);
  return o;
}

}  // namespace agifarm::bench
