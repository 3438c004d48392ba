// endpoints: the route table (every path the gateway answers, in one place) and the pages the gateway
// answers itself. A POST to a model route goes to proxy(); a GET or HEAD of a page route to its page
// function; any other method on a known path is a 405, an unknown path a 404.
#include <fmt/format.h>

#include <boost/json.hpp>

#include "dashboard/dashboard.hpp"
#include "gateway/server_impl.hpp"

namespace agifarm::gateway {

namespace {

// Who may read a page: anyone, or (when api_keys are configured) only a client presenting a valid key.
enum class access : std::uint8_t { open, key };
using page_fn = page (*)(const server::impl& m, std::optional<std::size_t> key);

struct route {
  std::string_view path;
  std::optional<endpoint> model = std::nullopt;  // a model endpoint: POST is proxied
  page_fn get = nullptr;                         // a page: GET and HEAD answered by this function
  access who = access::open;
};

page health(const server::impl& m, std::optional<std::size_t> key) { return m.health_page(key); }
page metrics_text(const server::impl& m, std::optional<std::size_t> key) { return m.metrics_page(key); }
page models(const server::impl& m, std::optional<std::size_t> key) { return m.models_page(key); }
page usage(const server::impl& m, std::optional<std::size_t> key) { return m.usage_page(key); }

// The route table. To add an endpoint, add its line here (a page function takes the server's state
// and the caller's key index and returns status, content type and body).
const route k_routes[] = {
    {"/v1/chat/completions", endpoint::chat_completions},
    {"/v1/completions", endpoint::completions},
    {"/v1/embeddings", endpoint::embeddings},
    {"/v1/messages", endpoint::messages},
    {"/health", std::nullopt, &health, access::open},
    {"/metrics", std::nullopt, &metrics_text, access::open},
    {"/v1/models", std::nullopt, &models, access::key},
    {"/v1/usage", std::nullopt, &usage, access::key},
};

const route* find_route(std::string_view path) {
  for (const auto& r : k_routes)
    if (path == r.path) return &r;
  return nullptr;
}

}  // namespace

std::string_view path_of(const client_request& req) {
  std::string_view target = req.target();
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  return target;
}

std::optional<endpoint> proxied_endpoint(const client_request& req) {
  if (req.method() != http::verb::post) return std::nullopt;
  const route* r = find_route(path_of(req));
  return r ? r->model : std::nullopt;
}

awaitable<bool> server::impl::send(timed_socket& s, int status, std::string_view content_type,
                                   std::string_view body, bool keep_alive, std::string_view extra) {
  std::string h = response_head(status, content_type, body.size(), keep_alive, extra);
  std::array<net::const_buffer, 2> bufs{net::buffer(h), net::buffer(body)};
  boost::system::error_code ec;
  std::size_t left = write_now(s.sock, bufs, ec);
  if (!ec && left > 0) {
    beast::buffers_suffix<std::array<net::const_buffer, 2>> rest(bufs);
    rest.consume(net::buffer_size(bufs) - left);
    s.expires_after(std::chrono::milliseconds(cfg.limits.idle_timeout_ms));
    auto [wec, n] = co_await net::async_write(s.sock, rest, k_tuple);
    (void)n;
    s.settle(wec);
    ec = wec;
  }
  co_return !ec;
}

awaitable<bool> server::impl::send_error(timed_socket& s, int status, std::string_view message,
                                         std::string_view code, bool keep_alive, std::string_view extra) {
  std::string body = openai_error_body(message, error_type_for(status), code);
  co_return co_await send(s, status, "application/json", body, keep_alive, extra);
}

page server::impl::health_page(std::optional<std::size_t>) const {
  auto rs = sched.replica_states();
  int usable = 0;
  for (const auto& r : rs) usable += (r.ready && !r.ejected) ? 1 : 0;
  return {200, "application/json",
          fmt::format(R"({{"status":"{}","replicas":{},"usable_replicas":{}}})", usable ? "ok" : "degraded",
                      rs.size(), usable)};
}

page server::impl::metrics_page(std::optional<std::size_t>) const {
  std::string body = met.render(sched.replica_states(), sched.pool_states(), open_connections.load());
  {
    std::lock_guard lk(models_mu);
    if (!models.empty()) body += render_models(models);
  }
  if (cfg.memory_rows) body += render_memory(cfg.memory_rows());
  return {200, "text/plain; version=0.0.4; charset=utf-8", std::move(body)};
}

page server::impl::models_page(std::optional<std::size_t>) const {
  return {200, "application/json", rt.models_json()};
}

// Usage rows: all of them without keys, else only the presenting key's.
page server::impl::usage_page(std::optional<std::size_t> key) const {
  namespace json = boost::json;
  json::array data;
  for (const auto& r : usage.rows()) {
    if (key && r.key != keys.name(*key)) continue;
    data.push_back(json::object{{"key", r.key},
                                {"requests", r.requests},
                                {"prompt_tokens", r.prompt_tokens},
                                {"completion_tokens", r.completion_tokens}});
  }
  return {200, "application/json",
          json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}})};
}

// Everything but a POST to a model endpoint (session() sends those to proxy() straight away, one
// coroutine frame fewer per request than going through here).
awaitable<bool> server::impl::handle(timed_socket& client, client_request& req) {
  bool keep = req.keep_alive() && !stopping;
  const std::string_view target = path_of(req);
  const auto method = req.method();
  if (dashboard::owns(target)) {  // the dashboard: /, /ui/..., /agifarm/status (docs/dashboard.md)
    std::function<bool(std::string_view)> key_ok;
    if (keys.enabled())
      key_ok = [this](std::string_view k) {
        return keys.authenticate("Bearer " + std::string(k), "").has_value();
      };
    auto d = dashboard::handle(
        {std::string_view(req.method_string()), req.target(), header_value(req, http::field::if_none_match),
         header_value(req, http::field::authorization)},
        {cfg.status_json, key_ok});
    std::string extra;
    for (const auto& [k, v] : d->headers) extra += k + ": " + v + "\r\n";
    co_return co_await send(client, d->status, d->content_type, d->body, keep, extra) && keep;
  }
  const route* r = find_route(target);
  if (r && r->get && (method == http::verb::get || method == http::verb::head)) {
    std::optional<std::size_t> key;
    if (r->who == access::key && keys.enabled()) {
      key = presented_key(req);
      if (!key) {
        co_return co_await send_error(client, 401,
                                      "Missing or invalid API key (send Authorization: Bearer <key>).",
                                      "invalid_api_key", keep) &&
            keep;
      }
    }
    page p = r->get(*this, key);
    co_return co_await send(client, p.status, p.content_type, p.body, keep) && keep;
  }
  if (r) {
    co_return co_await send_error(
        client, 405,
        fmt::format("Method {} is not allowed on {}.", std::string_view(req.method_string()), target),
        "method_not_allowed", keep) &&
        keep;
  }
  co_return co_await send_error(client, 404,
                                fmt::format("No endpoint {} {}.", std::string_view(req.method_string()),
                                            std::string(target.substr(0, 200))),
                                "not_found", keep) &&
      keep;
}

}  // namespace agifarm::gateway
