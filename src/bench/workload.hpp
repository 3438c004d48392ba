// workload: the requests the bench sends, generated deterministically from a seed (no files, no network).
//
//   chat    multi-turn conversations: each worker keeps one conversation whose history grows with every
//           turn (the model's real replies are appended), restarted after max_turns.
//   agents  many agents sharing one long system prompt (tool documentation, agent_prefix_words words)
//           followed by a short per-agent persona and task: the case prefix caching and prefix-affinity
//           routing are for.
//   long    long-context requests: a fresh document of long_words words (never seen before, so no cache
//           helps) and a question about it.
//   mix     each request drawn at random: chat 50 %, agents 30 %, long 20 %.
//
// Every request is a streaming chat completion (`"stream": true`). The model a request names comes from
// the targets of its part (round robin), chosen by the caller from the farm's /v1/models.
//
// Not thread-safe: one workload per driver thread (the bench's driver runs on one io_context thread).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace agifarm::bench {

enum class workload_kind { chat, agents, long_context, mix };

// "chat" | "agents" | "long" | "mix"; anything else: an error naming the value and the choices.
result<workload_kind> parse_workload(std::string_view name);
std::string_view workload_name(workload_kind k);

struct workload_options {
  workload_kind kind = workload_kind::mix;
  std::uint64_t seed = 1;
  int chat_max_turns = 6;
  int chat_user_words_min = 10, chat_user_words_max = 40;
  int chat_max_tokens = 48;
  int agents = 8;  // distinct agent personas sharing the prefix
  int agent_prefix_words = 400;
  int agent_task_words = 30;
  int agent_max_tokens = 32;
  int long_words = 1200;
  int long_max_tokens = 96;
  std::size_t reply_keep_bytes = 4096;  // chat history keeps at most this much of each reply
};

// The model names each part sends to (each non-empty; round robin within a part).
struct workload_targets {
  std::vector<std::string> chat, agents, long_context;
};

struct request_spec {
  std::string kind;  // chat | agents | long
  std::string model;
  std::string body;  // the JSON request body
  int max_tokens = 0;
  std::size_t prompt_words = 0;  // words of text in the messages (a rough size)
};

class workload {
 public:
  workload(workload_options o, workload_targets t);
  // The next request of worker `worker` (0 <= worker; conversations are per worker).
  request_spec next(int worker);
  // The outcome of the request last returned for `worker`: a chat conversation grows by the reply on
  // success, and restarts on failure.
  void reply(int worker, bool ok, std::string_view text);

  const workload_options& options() const { return o_; }
  const std::string& agent_prefix() const { return prefix_; }

 private:
  struct message {
    std::string role, content;
  };
  struct conversation {
    std::vector<message> messages;
    int turns = 0;
    bool last_was_chat = false;
  };
  std::string words(int n);
  request_spec make(const std::string& kind, const std::string& model, const std::vector<message>& msgs,
                    int max_tokens);
  request_spec next_chat(int worker);
  request_spec next_agents();
  request_spec next_long();

  workload_options o_;
  workload_targets t_;
  std::mt19937_64 rng_;
  std::string prefix_;
  std::vector<conversation> conv_;
  std::size_t chat_rr_ = 0, agents_rr_ = 0, long_rr_ = 0, agent_turn_ = 0;
};

}  // namespace agifarm::bench
