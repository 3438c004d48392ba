// agifarm synth tiny|shape|list: write GGUF files for tests and demos on machines with no internet.
#include <fmt/format.h>

#include <iostream>

#include "cli/commands.hpp"
#include "synth/tiny.hpp"

namespace agifarm::cli {

void add_synth_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "Write GGUF files: runnable tiny models and header-only shape files");
  cmd->require_subcommand(1);

  auto* tiny = cmd->add_subcommand("tiny", "A runnable random-weight qwen3 / qwen3moe model with the real qwen2 tokenizer");
  static synth::tiny_params p;
  static std::string out;
  tiny->add_option("-o,--output", out, "output .gguf path")->required();
  tiny->add_option("--arch", p.arch, "qwen3 or qwen3moe")->capture_default_str();
  tiny->add_option("--name", p.name, "general.name");
  tiny->add_option("--n-layer", p.n_layer)->capture_default_str();
  tiny->add_option("--n-embd", p.n_embd)->capture_default_str();
  tiny->add_option("--n-head", p.n_head)->capture_default_str();
  tiny->add_option("--n-head-kv", p.n_head_kv)->capture_default_str();
  tiny->add_option("--head-dim", p.head_dim)->capture_default_str();
  tiny->add_option("--n-ff", p.n_ff, "dense FFN size")->capture_default_str();
  tiny->add_option("--n-expert", p.n_expert)->capture_default_str();
  tiny->add_option("--n-expert-used", p.n_expert_used)->capture_default_str();
  tiny->add_option("--n-ff-exp", p.n_ff_exp, "expert FFN size")->capture_default_str();
  tiny->add_option("--ctx-train", p.context_length, "context_length metadata")->capture_default_str();
  tiny->add_option("--type", p.weight_type, "matrix type: F32, F16, Q8_0, Q4_0")->capture_default_str();
  tiny->add_option("--seed", p.seed)->capture_default_str();
  tiny->add_option("--vocab", p.vocab_path, "vocabulary GGUF (default: llama.cpp's models/ggml-vocab-qwen2.gguf)");
  tiny->callback([] {
    auto r = synth::write_tiny_model(p, out);
    if (!r) {
      std::cerr << "agifarm synth tiny: " << r.err().message << "\n";
      throw CLI::RuntimeError(r.err().exit_code);
    }
    fmt::print("wrote {} ({} parameters, {} bytes, vocab {})\n", r->path, r->n_params, r->file_bytes, r->n_vocab);
  });
}

}  // namespace agifarm::cli
