#include "bench/workload.hpp"

#include <fmt/format.h>

#include <array>
#include <boost/json.hpp>

namespace agifarm::bench {
namespace json = boost::json;

namespace {

constexpr std::array<std::string_view, 96> k_words{
    "the",    "model",    "request", "farm",    "server",   "memory",  "token",     "cache",    "prefix",
    "agent",  "tool",     "call",    "result",  "value",    "error",   "return",    "function", "string",
    "number", "list",     "file",    "read",    "write",    "open",    "close",     "search",   "query",
    "answer", "question", "reason",  "step",    "plan",     "code",    "test",      "build",    "run",
    "time",   "fast",     "slow",    "large",   "small",    "first",   "last",      "next",     "before",
    "after",  "because",  "while",   "every",   "each",     "some",    "many",      "few",      "more",
    "less",   "good",     "better",  "best",    "simple",   "clear",   "data",      "table",    "row",
    "column", "index",    "key",     "field",   "type",     "name",    "path",      "node",     "graph",
    "page",   "user",     "client",  "network", "stream",   "batch",   "queue",     "slot",     "layer",
    "weight", "expert",   "device",  "explain", "describe", "compare", "summarize", "check",    "find",
    "show",   "make",     "use",     "keep",    "give",     "take"};

constexpr std::array<std::string_view, 8> k_personas{"You are the code agent: write and fix code.",
                                                     "You are the search agent: find facts in documents.",
                                                     "You are the test agent: write unit tests.",
                                                     "You are the review agent: review changes for bugs.",
                                                     "You are the planner agent: break tasks into steps.",
                                                     "You are the shell agent: run commands and read output.",
                                                     "You are the docs agent: write user documentation.",
                                                     "You are the data agent: query tables and summarize."};

}  // namespace

result<workload_kind> parse_workload(std::string_view name) {
  if (name == "chat") return workload_kind::chat;
  if (name == "agents") return workload_kind::agents;
  if (name == "long") return workload_kind::long_context;
  if (name == "mix") return workload_kind::mix;
  return make_error(fmt::format("unknown workload '{}' (expected chat, agents, long or mix)", name), 2);
}

std::string_view workload_name(workload_kind k) {
  switch (k) {
    case workload_kind::chat:
      return "chat";
    case workload_kind::agents:
      return "agents";
    case workload_kind::long_context:
      return "long";
    case workload_kind::mix:
      return "mix";
  }
  return "mix";
}

workload::workload(workload_options o, workload_targets t) : o_(o), t_(std::move(t)), rng_(o.seed) {
  // A part with no target borrows another's; with none at all the body names no model (the gateway
  // then routes to its only pool).
  std::vector<std::string> any = !t_.chat.empty()     ? t_.chat
                                 : !t_.agents.empty() ? t_.agents
                                                      : t_.long_context;
  if (any.empty()) any.push_back("");
  for (auto* v : {&t_.chat, &t_.agents, &t_.long_context})
    if (v->empty()) *v = any;
  // The shared prefix: deterministic "tool documentation", the same for every agent and every run of a seed.
  std::mt19937_64 prefix_rng(o_.seed ^ 0x9e3779b97f4a7c15ull);
  std::swap(rng_, prefix_rng);
  prefix_ = "You are one of several agents of a coding assistant. Tools you may call:\n";
  int tool = 0;
  int remaining = o_.agent_prefix_words;
  while (remaining > 0) {
    int n = std::min(remaining, 40);
    prefix_ += fmt::format("tool_{}: {}.\n", tool++, words(n));
    remaining -= n;
  }
  std::swap(rng_, prefix_rng);
}

std::string workload::words(int n) {
  std::string out;
  std::uniform_int_distribution<std::size_t> pick(0, k_words.size() - 1);
  for (int i = 0; i < n; ++i) {
    if (i) out.push_back(' ');
    out.append(k_words[pick(rng_)]);
  }
  return out;
}

request_spec workload::make(const std::string& kind, const std::string& model,
                            const std::vector<message>& msgs, int max_tokens) {
  json::array m;
  std::size_t n_words = 0;
  for (const auto& x : msgs) {
    m.push_back(json::object{{"role", x.role}, {"content", x.content}});
    for (std::size_t i = 0; i < x.content.size(); ++i)
      if (x.content[i] == ' ' || x.content[i] == '\n') ++n_words;
    ++n_words;
  }
  json::object body;
  if (!model.empty()) body["model"] = model;
  body["messages"] = std::move(m);
  body["max_tokens"] = max_tokens;
  body["stream"] = true;
  request_spec r;
  r.kind = kind;
  r.model = model;
  r.body = json::serialize(body);
  r.max_tokens = max_tokens;
  r.prompt_words = n_words;
  return r;
}

request_spec workload::next_chat(int worker) {
  if (static_cast<std::size_t>(worker) >= conv_.size()) conv_.resize(static_cast<std::size_t>(worker) + 1);
  auto& c = conv_[static_cast<std::size_t>(worker)];
  if (c.turns >= o_.chat_max_turns) c = conversation{};
  if (c.messages.empty()) c.messages.push_back({"system", "You are a helpful assistant. Answer briefly."});
  std::uniform_int_distribution<int> len(o_.chat_user_words_min,
                                         std::max(o_.chat_user_words_min, o_.chat_user_words_max));
  c.messages.push_back({"user", words(len(rng_)) + "?"});
  ++c.turns;
  c.last_was_chat = true;
  const auto& model = t_.chat[chat_rr_++ % t_.chat.size()];
  return make("chat", model, c.messages, o_.chat_max_tokens);
}

request_spec workload::next_agents() {
  auto agent = agent_turn_++ % static_cast<std::size_t>(std::max(1, o_.agents));
  std::vector<message> msgs{{"system", prefix_ + std::string(k_personas[agent % k_personas.size()])},
                            {"user", fmt::format("Task {}: {}.", agent, words(o_.agent_task_words))}};
  const auto& model = t_.agents[agents_rr_++ % t_.agents.size()];
  return make("agents", model, msgs, o_.agent_max_tokens);
}

request_spec workload::next_long() {
  std::vector<message> msgs{
      {"system", "Read the document and answer the question. Think step by step."},
      {"user", "Document:\n" + words(o_.long_words) + "\n\nQuestion: " + words(12) + "?"}};
  const auto& model = t_.long_context[long_rr_++ % t_.long_context.size()];
  return make("long", model, msgs, o_.long_max_tokens);
}

request_spec workload::next(int worker) {
  if (worker >= 0 && static_cast<std::size_t>(worker) < conv_.size())
    conv_[static_cast<std::size_t>(worker)].last_was_chat = false;
  switch (o_.kind) {
    case workload_kind::chat:
      return next_chat(worker);
    case workload_kind::agents:
      return next_agents();
    case workload_kind::long_context:
      return next_long();
    case workload_kind::mix: {
      std::uniform_int_distribution<int> pick(0, 9);
      int p = pick(rng_);
      if (p < 5) return next_chat(worker);
      if (p < 8) return next_agents();
      return next_long();
    }
  }
  return next_chat(worker);
}

void workload::reply(int worker, bool ok, std::string_view text) {
  if (worker < 0 || static_cast<std::size_t>(worker) >= conv_.size()) return;
  auto& c = conv_[static_cast<std::size_t>(worker)];
  if (!c.last_was_chat) return;
  c.last_was_chat = false;
  if (!ok) {
    c = conversation{};
    return;
  }
  c.messages.push_back({"assistant", std::string(text.substr(0, o_.reply_keep_bytes))});
}

}  // namespace agifarm::bench
