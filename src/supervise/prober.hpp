// prober: asynchronous health checks of backends.
//
//   health     GET /health            llama-server: 200 ready, 503 loading
//   completion POST /completion       {"prompt":"hi","n_predict":1}; finds a wedged server whose /health
//                                     still answers but whose completions hang. On a timeout the
//                                     prober asks GET /slots (served by the same loop that runs
//                                     completions): an answer means "busy", not wedged.
//   tcp        connect only           ggml-rpc-server (no HTTP)
//
// start() never blocks; each request finishes within its timeout and its result comes back from poll()
// with the request's `tag` (the supervisor uses it to drop results from a previous incarnation).
// The real implementation (http_prober) runs one Boost.Asio io_context on its own thread; `on_result`,
// if set, is called from that thread after a result is queued (used to wake the supervisor's driver).
//
// Thread-safety: start() and poll() may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "supervise/clock.hpp"

namespace agifarm::supervise {

enum class probe_kind { health, completion, tcp };
enum class probe_outcome {
  ok,       // 200 (health, completion) or connected (tcp)
  loading,  // health answered 503: alive, still loading the model
  refused,  // nothing listens (connection refused)
  timeout,  // no complete answer within the timeout
  busy,     // completion timed out but GET /slots answered: the server's loop runs, all slots are busy
  error     // any other HTTP status or I/O error
};

struct probe_request {
  std::string backend;
  probe_kind kind = probe_kind::health;
  std::string host = "127.0.0.1";
  int port = 0;
  duration timeout{3000};
  std::uint64_t tag = 0;
  std::string api_key = {};  // sent as "Authorization: Bearer" when the backend requires one
};

struct probe_result {
  std::string backend;
  probe_kind kind = probe_kind::health;
  probe_outcome outcome = probe_outcome::error;
  int http_status = 0;
  std::string detail;  // short human text ("HTTP 500", "connection refused", ...)
  std::uint64_t tag = 0;
};

std::string to_string(probe_outcome o);
std::string to_string(probe_kind k);

class prober {
 public:
  virtual ~prober() = default;
  virtual void start(const probe_request& r) = 0;
  virtual std::vector<probe_result> poll() = 0;
};

class http_prober final : public prober {
 public:
  explicit http_prober(std::function<void()> on_result = {});
  ~http_prober() override;  // cancels outstanding probes and joins the thread
  void start(const probe_request& r) override;
  std::vector<probe_result> poll() override;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// One blocking HTTP GET on loopback with a deadline (for `agifarm status`: /slots of each backend).
// Returns the body on 200, an error otherwise.
struct http_answer {
  int status = 0;
  std::string body;
  std::string error;  // empty on a complete answer
};
http_answer http_get(const std::string& host, int port, const std::string& target, duration timeout);
// The same as a POST with a JSON body (llama-server's /slots/<id>?action=save|restore).
http_answer http_post(const std::string& host, int port, const std::string& target,
                      const std::string& json_body, duration timeout);

}  // namespace agifarm::supervise
