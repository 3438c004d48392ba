// The gateway in front of two real llama-server replicas on the synthesized tiny model: the official
// OpenAI JS client, failover under load with a replica SIGKILLed, mass client cancellation, prefix
// affinity against least-outstanding, and `agifarm serve` as a real process.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "gw_test_util.hpp"

using namespace agifarm;
using namespace agifarm::gwtest;
namespace json = boost::json;

namespace {

// -t 1: the CI machine has 2 cores; spinning threads of two servers would fight each other.
std::vector<std::string> server_args(int ctx = 1024) {
  return {"-np", "2", "-c", std::to_string(ctx), "-t", "1"};
}

struct replicas {
  std::vector<test::llama_server> servers;
  std::vector<std::string> urls() const {
    std::vector<std::string> u;
    for (const auto& s : servers) u.push_back("http://127.0.0.1:" + std::to_string(s.port));
    return u;
  }
};

replicas start_two(int ctx = 1024, std::vector<std::string> extra = {}, std::string model = {}) {
  replicas r;
  auto args = server_args(ctx);
  args.insert(args.end(), extra.begin(), extra.end());
  if (model.empty()) model = test::tiny_model("qwen3");
  for (int i = 0; i < 2; ++i) r.servers.push_back(test::start_llama_server(model, args));
  return r;
}

gateway::config llama_config(const std::vector<std::string>& urls,
                             gateway::balance policy = gateway::balance::least_outstanding) {
  auto c = base_config(urls, 2);
  c.pools[0].policy = policy;
  c.queue.max = 512;
  c.queue.timeout_ms = 60000;
  c.limits.first_byte_timeout_ms = 30000;
  return c;
}

bool all_slots_idle(int port) {
  auto r = test::http_request(port, "GET", "/slots", {}, {}, std::chrono::seconds(5));
  if (r.status != 200) return false;
  auto v = json::parse(r.body);
  for (const auto& s : v.as_array())
    if (s.at("is_processing").as_bool()) return false;
  return true;
}

std::string chat_body(bool stream, int max_tokens, const std::string& text = "Tell me a story.") {
  json::object o{{"model", "fast"},
                 {"stream", stream},
                 {"max_tokens", max_tokens},
                 {"messages", json::array{json::object{{"role", "user"}, {"content", text}}}}};
  return json::serialize(o);
}

}  // namespace

TEST(gateway_llama, openai_js_client_chats_and_streams_through_the_gateway) {
  auto reps = start_two();
  gateway::server gw(llama_config(reps.urls()));
  ASSERT_TRUE(gw.start().ok());
  std::string node_path = std::string(std::getenv("HOME")) + "/.cache/agifarm/node/node_modules";
  auto r = test::run({"/usr/bin/env", "NODE_PATH=" + node_path, "node",
                      std::string(AGIFARM_SOURCE_DIR) + "/tests/gateway/openai_client.cjs",
                      "http://127.0.0.1:" + std::to_string(gw.port()) + "/v1", "fast"},
                     std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto line = r.output.substr(r.output.rfind('{', r.output.find("\"models\"")));
  auto v = json::parse(line.substr(0, line.find('\n')));
  auto models = v.at("models").as_array();
  EXPECT_NE(std::find(models.begin(), models.end(), json::value("tiny")), models.end());
  EXPECT_NE(std::find(models.begin(), models.end(), json::value("fast")), models.end());
  EXPECT_EQ(v.at("chat").at("object").as_string(), "chat.completion");
  EXPECT_GT(v.at("chat").at("completion_tokens").as_int64(), 0);
  EXPECT_GE(v.at("stream").at("chunks").as_int64(), 2);
  EXPECT_FALSE(v.at("stream").at("finish_reason").is_null());
  EXPECT_EQ(v.at("completion").at("object").as_string(), "text_completion");
  EXPECT_EQ(v.at("unknown").at("status").as_int64(), 404);
  EXPECT_EQ(v.at("unknown").at("code").as_string(), "model_not_found");
  // The gateway counted the backends' token usage for the non-streaming answers.
  auto m = test::http_request(gw.port(), "GET", "/metrics").body;
  EXPECT_EQ(m.find("agifarm_gateway_completion_tokens_total{pool=\"tiny\"} 0\n"), std::string::npos) << m;
  // A stream whose client did not ask for usage is counted too (from llama-server's final timings).
  auto completion_tokens = [&] {
    auto text = test::http_request(gw.port(), "GET", "/metrics").body;
    const std::string key = "agifarm_gateway_completion_tokens_total{pool=\"tiny\"} ";
    auto at = text.find(key);
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + key.size()));
  };
  double before = completion_tokens();
  std::string body = chat_body(true, 5);
  body.insert(body.size() - 1, ",\"ignore_eos\":true");
  auto r2 = raw_exchange(gw.port(), post("/v1/chat/completions", body));
  ASSERT_NE(body_of(r2.data).find("data: [DONE]"), std::string::npos) << r2.data.substr(0, 400);
  EXPECT_EQ(completion_tokens(), before + 5);
}

// 300 requests from 32 concurrent clients; one replica is SIGKILLed after 100 have finished. Every
// request that had not started streaming succeeds on the other replica; a stream cut mid-way ends
// with an SSE error event (never [DONE]); nothing hangs.
TEST(gateway_llama, failover_under_load_with_a_replica_killed) {
  auto reps = start_two();
  auto c = llama_config(reps.urls());
  c.limits.first_byte_timeout_ms = 20000;
  gateway::server gw(c);
  ASSERT_TRUE(gw.start().ok());
  constexpr int k_requests = 300, k_clients = 32;
  std::atomic<int> next{0}, finished{0}, ok_json{0}, ok_stream{0}, cut_with_error{0}, bad{0};
  std::mutex bad_mu;
  std::vector<std::string> bad_samples;
  std::atomic<bool> killed{false};
  auto client = [&] {
    for (;;) {
      int i = next++;
      if (i >= k_requests) return;
      bool stream = i % 2 == 0;
      // Streams are long (64 tokens, EOS ignored) so some are mid-way when the replica dies.
      std::string body = stream ? chat_body(true, 64) : chat_body(false, 24);
      if (stream) body.insert(body.size() - 1, ",\"ignore_eos\":true");
      auto r = raw_exchange(gw.port(), post("/v1/chat/completions", body), std::chrono::seconds(90));
      int st = status_of(r.data);
      body = body_of(r.data);
      if (st == 200 && !stream && body.find("\"chat.completion\"") != std::string::npos) {
        ok_json++;
      } else if (st == 200 && stream && body.find("data: [DONE]") != std::string::npos) {
        ok_stream++;
      } else if (st == 200 && stream && body.find("[DONE]") == std::string::npos &&
                 body.find("data: {\"error\"") != std::string::npos && r.closed) {
        cut_with_error++;
      } else {
        bad++;
        std::lock_guard lock(bad_mu);
        if (bad_samples.size() < 3) bad_samples.push_back(r.data.substr(0, 600));
      }
      if (++finished == 100) {
        reps.servers[0].proc.kill(SIGKILL);
        killed = true;
      }
    }
  };
  auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < k_clients; ++i) ts.emplace_back(client);
  for (auto& t : ts) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(killed);
  std::printf("failover: %d json ok, %d streams ok, %d streams cut with an error event, %d bad, %.1f s\n",
              ok_json.load(), ok_stream.load(), cut_with_error.load(), bad.load(), seconds);
  EXPECT_EQ(bad.load(), 0) << (bad_samples.empty() ? "" : bad_samples[0]);
  EXPECT_EQ(ok_json + ok_stream + cut_with_error, k_requests);
  EXPECT_EQ(ok_json.load(), k_requests / 2);  // non-streaming requests never reach the client half-done
  EXPECT_LE(cut_with_error.load(), 2);        // at most the killed replica's 2 slots were mid-stream
  auto st = gw.stats();
  EXPECT_FALSE(st.replicas[0].healthy);
  EXPECT_TRUE(st.replicas[1].healthy);
  EXPECT_EQ(st.replicas[0].outstanding + st.replicas[1].outstanding, 0);
}

// 200 clients read the first event of a long stream and hang up. The gateway closes each upstream at
// once, so llama-server stops generating: no slot stays busy, the run takes a fraction of the time
// the 200 full generations would, and the gateway's fds return to where they were.
// The backend's own count of generated tokens (llama-server --metrics).
long tokens_predicted(int port) {
  auto r = test::http_request(port, "GET", "/metrics", {}, {}, std::chrono::seconds(5));
  auto at = r.body.find("\nllamacpp:tokens_predicted_total ");
  if (r.status != 200 || at == std::string::npos) return -1;
  return std::stol(r.body.substr(at + std::strlen("\nllamacpp:tokens_predicted_total ")));
}

TEST(gateway_llama, clients_disconnecting_mid_stream_free_backend_slots) {
  auto reps = start_two(1024, {"--metrics"});
  gateway::server gw(llama_config(reps.urls()));
  ASSERT_TRUE(gw.start().ok());
  json::object o{
      {"model", "fast"},
      {"stream", true},
      {"max_tokens", 400},
      {"ignore_eos", true},
      {"messages", json::array{json::object{{"role", "user"}, {"content", "Write a very long poem."}}}}};
  const std::string req = post("/v1/chat/completions", json::serialize(o));
  raw_exchange(gw.port(), post("/v1/chat/completions", chat_body(false, 2)));  // warm pools and threads
  int baseline = count_fds();
  std::atomic<int> next{0}, saw_first{0};
  auto started = std::chrono::steady_clock::now();
  auto client = [&] {
    for (;;) {
      if (next++ >= 200) return;
      int fd = connect_loopback(gw.port());
      if (fd < 0) continue;
      send_all(fd, req);
      std::string got;
      char buf[4096];
      while (got.find("\"delta\":{\"content\"") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 60000) <= 0) break;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
      if (got.find("\"delta\":{\"content\"") != std::string::npos) saw_first++;
      ::close(fd);
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 16; ++i) ts.emplace_back(client);
  for (auto& t : ts) t.join();
  EXPECT_EQ(saw_first.load(), 200);
  ASSERT_TRUE(test::wait_until(
      [&] { return all_slots_idle(reps.servers[0].port) && all_slots_idle(reps.servers[1].port); },
      std::chrono::seconds(10)));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // Had generation run on, the backends would have produced 200 x 400 = 80,000 tokens. Each stream is
  // cut after its first token; allow for the few the backend produces before it notices.
  long produced = tokens_predicted(reps.servers[0].port) + tokens_predicted(reps.servers[1].port);
  std::printf(
      "cancellation: 200 streams cut after their first token, slots idle after %.1f s, %ld tokens "
      "generated\n",
      seconds, produced);
  EXPECT_GE(produced, 200);
  EXPECT_LT(produced, 200 * 400 / 4) << "the backends kept generating for clients that were gone";
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto s = gw.stats();
        return s.replicas[0].outstanding + s.replicas[1].outstanding == 0 && s.open_connections == 0;
      },
      std::chrono::seconds(5)));
  ASSERT_TRUE(test::wait_until([&] { return count_fds() <= baseline + 4; }, std::chrono::seconds(5)))
      << count_fds() << " fds vs " << baseline << " before";
}

// 16 conversations, each with its own ~2,000-token prefix, 3 turns each, 4 at a time, on 2 replicas.
// Affinity keeps a conversation on the replica that holds its prefix in its prompt cache.
// Each policy has its own gateway and its own pair of replicas; their turns alternate (LO turn 0,
// PA turn 0, LO turn 1, ...) so load from whatever else runs on the machine falls on both alike.
TEST(gateway_llama, prefix_affinity_beats_least_outstanding_on_cache_hits_and_ttft) {
  // A model heavy enough that prefilling a 2,000-token prefix (~0.3 s on one thread) dwarfs the
  // machine's scheduling noise, so the TTFT comparison measures cache hits, not load.
  auto model = test::tiny_model(
      "qwen3", {"--n-embd", "256", "--n-layer", "4", "--n-ff", "768", "--n-head", "8", "--n-head-kv", "4"});
  struct arm {
    replicas reps;
    std::unique_ptr<gateway::server> gw;
    std::mt19937 rng;
    std::vector<json::array> convs = std::vector<json::array>(16);
    double ttft_sum = 0;
    int n = 0;
    long cached = 0, processed = 0;
    double hit_rate() const { return static_cast<double>(cached) / static_cast<double>(cached + processed); }
    double mean_ttft_ms() const { return n ? ttft_sum / n : 0; }
  };
  auto make_arm = [&](gateway::balance policy, unsigned seed) {
    auto a = std::make_unique<arm>();
    a->reps = start_two(16384, {}, model);
    a->gw = std::make_unique<gateway::server>(llama_config(a->reps.urls(), policy));
    EXPECT_TRUE(a->gw->start().ok());
    a->rng.seed(seed);
    static const char* k_words[] = {"river",  "stone",  "light",  "garden", "window", "music",
                                    "paper",  "forest", "engine", "silver", "cloud",  "market",
                                    "bridge", "winter", "harbor", "candle"};
    for (auto& conv : a->convs) {
      std::string p = "Background notes " + std::to_string(a->rng()) + ":";
      for (int w = 0; w < 1350; ++w) p += std::string(" ") + k_words[a->rng() % 16] + (w % 2 ? "," : "");
      conv.push_back(json::object{{"role", "system"}, {"content", p}});
    }
    return a;
  };
  auto run_turn = [&](arm& A, int turn) {
    std::vector<int> order(16);
    for (int i = 0; i < 16; ++i) order[static_cast<std::size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), A.rng);
    std::mutex mu;
    std::atomic<int> next{0};
    auto worker = [&] {
      for (;;) {
        int k = next++;
        if (k >= 16) return;
        auto& conv = A.convs[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])];
        json::array msgs;
        {
          std::lock_guard lock(mu);
          conv.push_back(
              json::object{{"role", "user"}, {"content", "Question " + std::to_string(turn) + " about it?"}});
          msgs = conv;
        }
        json::object o{{"model", "fast"}, {"stream", true}, {"max_tokens", 4}, {"messages", msgs}};
        int fd = connect_loopback(A.gw->port());
        auto t0 = std::chrono::steady_clock::now();
        send_all(fd, post("/v1/chat/completions", json::serialize(o)));
        std::string got;
        double ttft = -1;
        char buf[65536];
        for (;;) {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 60000) <= 0) break;
          ssize_t r = ::recv(fd, buf, sizeof buf, 0);
          if (r <= 0) break;
          got.append(buf, static_cast<std::size_t>(r));
          if (ttft < 0 && got.find("\"delta\":{\"content\"") != std::string::npos)
            ttft = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        }
        ::close(fd);
        std::string sse = body_of(got);
        auto at = sse.find("\"timings\":");
        ASSERT_NE(at, std::string::npos) << got.substr(0, 400);
        auto line_start = sse.rfind("data: ", at) + 6;
        auto v = json::parse(sse.substr(line_start, sse.find('\n', at) - line_start));
        auto& t = v.at("timings");
        std::lock_guard lock(mu);
        A.cached += t.at("cache_n").to_number<long>();
        A.processed += t.at("prompt_n").to_number<long>();
        if (ttft >= 0) {
          A.ttft_sum += ttft;
          A.n++;
        }
        conv.push_back(json::object{{"role", "assistant"}, {"content", "Noted."}});
      }
    };
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i) ts.emplace_back(worker);
    for (auto& t : ts) t.join();
  };
  auto lo = make_arm(gateway::balance::least_outstanding, 11);
  auto pa = make_arm(gateway::balance::prefix_affinity, 22);
  for (int turn = 0; turn < 3; ++turn) {
    run_turn(*lo, turn);
    run_turn(*pa, turn);
  }
  std::printf("prefix affinity:    cache hit %.1f%% (%ld cached / %ld processed tokens), mean TTFT %.1f ms\n",
              pa->hit_rate() * 100, pa->cached, pa->processed, pa->mean_ttft_ms());
  std::printf("least outstanding:  cache hit %.1f%% (%ld cached / %ld processed tokens), mean TTFT %.1f ms\n",
              lo->hit_rate() * 100, lo->cached, lo->processed, lo->mean_ttft_ms());
  EXPECT_EQ(pa->n, 48);
  EXPECT_EQ(lo->n, 48);
  EXPECT_GT(pa->hit_rate(), lo->hit_rate());
  EXPECT_LT(pa->mean_ttft_ms(), lo->mean_ttft_ms());
  lo->gw->stop();
  pa->gw->stop();
}

TEST(gateway_llama, agifarm_serve_runs_standalone_and_rejects_bad_config) {
  auto reps = start_two();
  std::string dir = test::temp_dir("gateway-serve");
  int port = test::free_port();
  {
    std::ofstream f(dir + "/farm.yaml");
    f << "listen: 127.0.0.1:" << port << "\ngateway:\n  usage_db: " << dir << "/usage.db\npools:\n"
      << "  - name: tiny\n    aliases: [fast]\n    slots_per_replica: 2\n    replicas:\n";
    for (std::size_t i = 0; i < 2; ++i)
      f << "      - {name: r" << i << ", url: \"" << reps.urls()[i] << "\"}\n";
  }
  test::child serve({test::agifarm_cli(), "serve", "--config", dir + "/farm.yaml"}, dir + "/serve.log");
  ASSERT_TRUE(test::wait_until(
      [&] {
        return test::http_request(port, "GET", "/health", {}, {}, std::chrono::seconds(2)).status == 200;
      },
      std::chrono::seconds(20)))
      << serve.log();
  auto r = test::http_request(port, "POST", "/v1/chat/completions", chat_body(false, 4));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(serve.log().find("bound to loopback only"), std::string::npos);
  serve.kill(SIGTERM);
  auto code = serve.wait_exit(std::chrono::seconds(20));
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << serve.log();

  {
    std::ofstream f(dir + "/bad.yaml");
    f << "pools:\n  - name: tiny\n    balance: random\n    replicas: [{url: 'http://127.0.0.1:1'}]\n";
  }
  auto bad =
      test::run({test::agifarm_cli(), "serve", "--config", dir + "/bad.yaml"}, std::chrono::seconds(20));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("bad.yaml:3:14: pools[0].balance: 'random' is not one of"), std::string::npos)
      << bad.output;
}
