// proxy: one POST to a model endpoint, from admission (key, body, route, the key's models and rate)
// through a slot from the scheduler (at once, or after a wait in the pool's queue) and the attempts on
// replicas (retried with backoff before the first byte) to the accounting in metrics and usage.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "gateway/server_impl.hpp"

namespace agifarm::gateway {

std::optional<std::size_t> server::impl::presented_key(const client_request& req) const {
  return keys.authenticate(header_value(req, http::field::authorization), header_value(req, "x-api-key"));
}

// The checks before a request may take a slot, in order: API key, body, route, the key's models,
// the key's rate. Counts refusals in the metrics.
// (Out-parameters, not a returned variant: proxy()'s frame holds each only once.)
std::optional<error_reply> server::impl::admit(const client_request& req, endpoint kind, admitted& a) {
  if (keys.enabled()) {
    a.key = presented_key(req);
    if (!a.key) {
      met.request_done(k_no_index, k_no_index, 401, 0);
      return error_reply{401, "Missing or invalid API key (send Authorization: Bearer <key>).",
                         "invalid_api_key", ""};
    }
  }
  auto info = inspect_request(req.body(), kind);
  if (!info) {
    met.request_done(k_no_index, k_no_index, 400, 0);
    return error_reply{400, info.err().message, "invalid_request", ""};
  }
  a.info = std::move(*info);
  auto pool = rt.find(a.info.model);
  if (!pool) {
    met.request_done(k_no_index, k_no_index, 404, 0);
    return error_reply{404, rt.unknown_model_message(a.info.model), "model_not_found", ""};
  }
  a.pool = *pool;
  if (a.key && !keys.allows(*a.key, a.info.model, rt.pool_name(a.pool))) {
    met.request_done(a.pool, k_no_index, 403, 0);
    return error_reply{403,
                       fmt::format("API key '{}' may not use model '{}'.", keys.name(*a.key), a.info.model),
                       "model_not_allowed", ""};
  }
  if (a.key) {
    if (int wait = keys.take(*a.key, clock_type::now())) {
      met.request_done(a.pool, k_no_index, 429, 0);
      return error_reply{
          429,
          fmt::format("API key '{}' is over its rate_per_minute; retry in {} s.", keys.name(*a.key), wait),
          "rate_limit_exceeded", fmt::format("Retry-After: {}\r\n", wait)};
    }
  }
  return std::nullopt;
}

// Which replica the balancer should prefer: the session header's, else the prompt prefix's.
pick_request server::impl::pick_for(const client_request& req, const admitted& a) const {
  pick_request pick;
  if (auto sess = header_value(req, std::string_view(cfg.session_header)); !sess.empty()) {
    pick.has_key = true;
    pick.session = true;
    pick.key = hash64(sess);
  } else if (a.info.has_affinity) {
    pick.has_key = true;
    pick.key = a.info.affinity_hash;
  }
  return pick;
}

// How long a request may wait in the pool's queue: an on-demand pool's model may have to load first.
std::chrono::milliseconds server::impl::queue_wait(std::size_t pool) const {
  int ms = cfg.queue.timeout_ms;
  if (sched.on_demand(pool)) ms = std::max(ms, cfg.pools[pool].load_timeout_ms);
  return std::chrono::milliseconds(ms);
}

namespace {

int http_status(refusal why) {
  return why == refusal::queue_full ? 429 : why == refusal::exhausted ? 502 : 503;
}

// The refusal a queued request's grant carries (none: it got a lease, now in `l`).
refusal refusal_of(const grant& g, std::optional<lease>& l) {
  switch (g.status) {
    case grant_status::granted:
      l = g.l;
      return refusal::none;
    case grant_status::no_healthy:
      return refusal::no_healthy;
    case grant_status::refused:
      return refusal::loader_refused;
    case grant_status::timed_out:
      return refusal::queue_full;
  }
  return refusal::queue_full;
}

}  // namespace

std::string server::impl::refusal_message(std::size_t pool, refusal why) const {
  if (why == refusal::loader_refused) return sched.refusal(pool);
  if (why == refusal::no_healthy && sched.on_demand(pool))
    return fmt::format("Model '{}' is loaded on demand and did not become ready within {} ms.",
                       rt.pool_name(pool), queue_wait(pool).count());
  if (why == refusal::no_healthy)
    return fmt::format("No healthy replica of '{}' is available.", rt.pool_name(pool));
  return fmt::format("All replicas of '{}' are busy and its queue is full or the wait exceeded {} ms.",
                     rt.pool_name(pool), queue_wait(pool).count());
}

// Asks the scheduler for a slot: a lease, a queue ticket (the grant comes to `st`), or a refusal.
// (A plain function: GCC keeps every local of a coroutine in its heap frame.)
void server::impl::acquire_slot(std::size_t pool, const pick_request& pick,
                                const std::vector<std::size_t>& excluded, clock_type::time_point deadline,
                                const std::shared_ptr<request_state>& st, std::optional<lease>& l,
                                refusal& why, std::optional<std::uint64_t>& ticket) {
  // The grant callback is made only if the request is queued (see acquire_lazy).
  auto ar = sched.acquire_lazy(pool, pick, excluded, clock_type::now(), deadline, [&st]() -> grant_callback {
    return [weak = std::weak_ptr<request_state>(st)](grant g) {
      if (auto s = weak.lock()) {
        net::post(s->ex, [s, g] {
          s->granted = g;
          s->cancel_wait();
        });
      }
    };
  });
  if (ar.wants_load && cfg.on_demand_wanted) cfg.on_demand_wanted(sched.pool_name(pool));
  switch (ar.status) {
    case acquire_status::granted:
      l = ar.l;
      break;
    case acquire_status::queued:
      ticket = ar.ticket;
      break;
    case acquire_status::queue_full:
      why = refusal::queue_full;
      break;
    case acquire_status::no_healthy:
      why = refusal::no_healthy;
      break;
    case acquire_status::exhausted:
      why = refusal::exhausted;
      break;
  }
}

// Waits for a queued request's grant. Returns the grant, or nullopt when the client went away.
awaitable<std::optional<grant>> server::impl::wait_grant(std::shared_ptr<request_state> st,
                                                         std::uint64_t ticket,
                                                         clock_type::time_point deadline) {
  st->waiting = true;
  st->wait_timer().expires_at(deadline);
  for (;;) {
    auto [ec] = co_await st->wait_timer().async_wait(k_tuple);
    if (st->granted) break;
    if (st->client_gone) {
      if (sched.cancel(ticket)) {
        st->waiting = false;
        co_return std::nullopt;
      }
      st->wait_timer().expires_at(clock_type::time_point::max());  // a grant is on its way
      continue;
    }
    if (!ec) {
      sched.expire(clock_type::now());  // calls back every waiter past its deadline, us included
      if (!st->granted) st->wait_timer().expires_at(clock_type::now() + std::chrono::milliseconds(5));
    }
  }
  st->waiting = false;
  if (st->client_gone && st->granted->status == grant_status::granted) {
    sched.release(st->granted->l, outcome::neutral, clock_type::now());
    co_return std::nullopt;
  }
  co_return st->granted;
}

// Before retry `a` (1, 2, ...): jittered exponential backoff, base * 2^(a-1) * [0.5, 1.5).
awaitable<void> server::impl::backoff(proxy_call& c, int a) {
  met.retry(c.pool);
  double base = cfg.limits.retry_backoff_ms * static_cast<double>(1 << std::min(a - 1, 8));
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  c.st->wait_timer().expires_after(
      std::chrono::microseconds(static_cast<long long>(base * jitter(c.w.rng) * 1000)));
  c.st->waiting = true;
  co_await c.st->wait_timer().async_wait(k_tuple);
  c.st->waiting = false;
}

// Gives the attempt's lease back to the scheduler with what it says of the replica, and logs failures.
void server::impl::settle_attempt(proxy_call& c, const lease& l, const attempt_result& r, int a,
                                  int attempts) {
  const auto now = clock_type::now();
  switch (r.outcome) {
    case attempt_outcome::client_gone:
      c.st->client_gone = true;
      sched.release(l, outcome::neutral, now);
      return;
    case attempt_outcome::completed:
    case attempt_outcome::cut_mid_response: {
      const bool cut = r.outcome == attempt_outcome::cut_mid_response;
      if (cut)
        spdlog::warn("gateway: {} -> {}: failed mid-response: {}", rt.pool_name(c.pool),
                     sched.replica_name(l.replica), r.why);
      if (sched.release(l, cut || c.status >= 500 ? outcome::failure : outcome::success, now))
        spdlog::warn("gateway: replica {} ejected after repeated failures", sched.replica_name(l.replica));
      return;
    }
    case attempt_outcome::retryable:
    case attempt_outcome::responded:
      c.excluded.push_back(l.replica);
      spdlog::warn("gateway: {} -> {}: {} (attempt {} of {})", rt.pool_name(c.pool),
                   sched.replica_name(l.replica), r.why, a + 1, attempts);
      if (sched.release(l, outcome::failure, now))
        spdlog::warn("gateway: replica {} ejected after repeated failures", sched.replica_name(l.replica));
      return;
  }
}

// Counts the finished request in metrics and usage. Returns the error reply of a request whose every
// attempt failed before the first byte (504 if the last one timed out, else 502).
std::optional<error_reply> server::impl::finish(proxy_call& c, const std::optional<std::size_t>& key,
                                                bool committed, failure_kind last_kind,
                                                std::string last_failure, std::size_t replica,
                                                int final_status) {
  double duration = std::chrono::duration<double>(clock_type::now() - c.started).count();
  const std::string key_name = key ? keys.name(*key) : std::string("anonymous");
  if (c.st->client_gone) {
    met.request_done(c.pool, replica, k_metrics_client_gone, duration, c.ttfb_s);
    if (c.usage_found) met.tokens(c.pool, c.usage.prompt, c.usage.completion);
    usage.add(key_name, 1, c.usage_found ? c.usage : token_usage{});
    return std::nullopt;
  }
  if (!committed) {
    int status = is_gateway_timeout(last_kind) ? 504 : 502;
    if (last_failure.empty() && final_status == 0) last_failure = "no attempt was made";
    met.request_done(c.pool, replica, status, duration);
    return error_reply{status,
                       fmt::format("Every attempt on pool '{}' failed before the first byte; last: {}",
                                   rt.pool_name(c.pool), last_failure),
                       "backend_unavailable", ""};
  }
  met.request_done(c.pool, replica, final_status, duration, c.ttfb_s);
  if (c.usage_found) met.tokens(c.pool, c.usage.prompt, c.usage.completion);
  usage.add(key_name, 1, c.usage_found ? c.usage : token_usage{});
  return std::nullopt;
}

// Handles one POST to a model endpoint. Returns whether the client connection may be kept.
awaitable<bool> server::impl::proxy(worker& w, timed_socket& client, client_request& req, endpoint kind,
                                    clock_type::time_point started) {
  bool keep = req.keep_alive() && !stopping;
  // One co_await site for every error reply of admission and one for the rest: each site keeps its own
  // temporaries in the coroutine frame, and a frame above 1 KiB is a malloc per request.
  admitted ok;
  std::optional<error_reply> fail = admit(req, kind, ok);
  if (fail)
    co_return co_await send_error(client, fail->status, fail->message, fail->code, keep, fail->extra) && keep;
  const pick_request pick = pick_for(req, ok);
  auto st = std::allocate_shared<request_state>(recycling_allocator<request_state>{}, w.ioc.get_executor(),
                                                client, started);
  w.in_flight.push_back(*st);
  struct watch_guard {
    std::shared_ptr<request_state> st;
    ~watch_guard() {
      st->done = true;
      st->unlink();
      if (st->watching) st->watch_cancel.emit(net::cancellation_type::all);
    }
  } guard{st};

  proxy_call c{w, client, req, st, ok.pool, keep, started};
  std::string last_failure;
  failure_kind last_kind = failure_kind::none;
  int final_status = 0;
  std::size_t final_replica = k_no_index;
  bool result_keep = keep;
  bool committed = false;
  std::unique_ptr<upstream_conn> conn;
  const int attempts = 1 + std::max(0, cfg.limits.retries);
  for (int a = 0; a < attempts && !committed; ++a) {
    if (a > 0) {
      co_await backoff(c, a);
      if (st->client_gone) break;
    }
    auto deadline = clock_type::now() + queue_wait(c.pool);
    std::optional<lease> l;
    refusal why = refusal::none;
    std::optional<std::uint64_t> ticket;
    acquire_slot(c.pool, pick, c.excluded, deadline, st, l, why, ticket);
    if (ticket) {
      auto g = co_await wait_grant(st, *ticket, deadline);
      st->granted.reset();
      if (g) why = refusal_of(*g, l);  // else the client is gone
    }
    if (st->client_gone) break;
    if (why == refusal::exhausted) {
      final_status = http_status(why);
      break;  // every replica tried: report the last failure below
    }
    if (why != refusal::none) {
      final_status = http_status(why);
      met.request_done(c.pool, k_no_index, final_status,
                       std::chrono::duration<double>(clock_type::now() - started).count());
      fail = error_reply{final_status, refusal_message(c.pool, why),
                         final_status == 503 ? "no_healthy_replica" : "queue_full", "Retry-After: 1\r\n"};
      break;
    }
    if (!l) break;
    final_replica = l->replica;
    auto r = co_await open_response(c, *l, conn);
    if (r.outcome == attempt_outcome::responded) r = co_await relay(c, *l, a + 1 == attempts, conn);
    conn.reset();
    if (r.outcome == attempt_outcome::completed || r.outcome == attempt_outcome::cut_mid_response) {
      committed = true;
      final_status = r.outcome == attempt_outcome::cut_mid_response ? k_metrics_cut_stream : c.status;
      result_keep = r.keep_alive;
    } else if (r.outcome == attempt_outcome::retryable) {
      last_failure = r.why;
      last_kind = r.failure;
    }
    settle_attempt(c, *l, r, a, attempts);
    if (r.outcome == attempt_outcome::client_gone) break;
  }
  if (!fail)
    fail = finish(c, ok.key, committed, last_kind, std::move(last_failure), final_replica, final_status);
  if (st->client_gone) co_return false;
  if (fail)
    co_return co_await send_error(client, fail->status, fail->message, fail->code, keep, fail->extra) && keep;
  co_return result_keep;
}

}  // namespace agifarm::gateway
