// request: reads what routing needs out of an OpenAI/Anthropic-style JSON request body, and builds
// OpenAI-style error bodies. Pure functions over bytes; thread-safe; never throws.
//
// The affinity key is a hash of the conversation's stable beginning: for chat/messages the system
// prompt plus the first user message (at most k_affinity_bytes of text), for completions the first
// k_affinity_bytes of the prompt, for embeddings none. Turns of one conversation share it; different
// conversations with one common system prompt do not.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace agifarm::gateway {

enum class endpoint { chat_completions, completions, embeddings, messages };

inline constexpr std::size_t k_affinity_bytes = 8192;

struct request_info {
  std::string model;  // empty when the body has none
  bool stream = false;
  bool has_affinity = false;
  std::uint64_t affinity_hash = 0;
};

// Errors (HTTP 400) say what is wrong and where: "malformed JSON at line 3, column 7 (byte 41): ...".
result<request_info> inspect_request(std::string_view body, endpoint kind);

// 64-bit FNV-1a with a final avalanche; stable across runs and machines.
std::uint64_t hash64(std::string_view bytes, std::uint64_t seed = 0);

// {"error":{"message":..., "type":..., "code":..., "param":null}}
std::string openai_error_body(std::string_view message, std::string_view type, std::string_view code);

}  // namespace agifarm::gateway
