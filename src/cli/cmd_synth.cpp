// agifarm synth tiny|shape|list: write GGUF files for tests and demos on machines with no internet.
#include <fmt/format.h>

#include <iostream>

#include "cli/commands.hpp"
#include "synth/shape.hpp"
#include "synth/tiny.hpp"

namespace agifarm::cli {

void add_synth_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("synth", "Write GGUF files: runnable tiny models and header-only shape files");
  cmd->require_subcommand(1);

  auto* tiny = cmd->add_subcommand(
      "tiny",
      "A runnable random-weight qwen3 / qwen3moe / gpt-oss / qwen35moe model with the real qwen2 tokenizer");
  static synth::tiny_params p;
  static std::string out;
  tiny->add_option("-o,--output", out, "output .gguf path")->required();
  tiny->add_option("--arch", p.arch, "qwen3, qwen3moe, gpt-oss or qwen35moe")->capture_default_str();
  tiny->add_option("--name", p.name, "general.name");
  tiny->add_option("--n-layer", p.n_layer)->capture_default_str();
  tiny->add_option("--n-embd", p.n_embd)->capture_default_str();
  tiny->add_option("--n-head", p.n_head)->capture_default_str();
  tiny->add_option("--n-head-kv", p.n_head_kv)->capture_default_str();
  tiny->add_option("--head-dim", p.head_dim, "0: the arch's default (32; qwen35moe 64)")
      ->capture_default_str();
  tiny->add_option("--n-ff", p.n_ff, "dense FFN size")->capture_default_str();
  tiny->add_option("--n-expert", p.n_expert)->capture_default_str();
  tiny->add_option("--n-expert-used", p.n_expert_used)->capture_default_str();
  tiny->add_option("--n-ff-exp", p.n_ff_exp, "expert FFN size")->capture_default_str();
  tiny->add_option("--ctx-train", p.context_length, "context_length metadata")->capture_default_str();
  tiny->add_option("--type", p.weight_type,
                   "matrix type: F32, F16, Q8_0, Q4_0 (gpt-oss, qwen35moe: F32, F16)")
      ->capture_default_str();
  tiny->add_option("--seed", p.seed)->capture_default_str();
  tiny->add_option("--vocab", p.vocab_path,
                   "vocabulary GGUF (default: llama.cpp's models/ggml-vocab-qwen2.gguf)");
  tiny->callback([] {
    auto r = synth::write_tiny_model(p, out);
    if (!r) {
      std::cerr << "agifarm synth tiny: " << r.err().message << "\n";
      throw CLI::RuntimeError(r.err().exit_code);
    }
    fmt::print("wrote {} ({} parameters, {} bytes, vocab {})\n", r->path, r->n_params, r->file_bytes,
               r->n_vocab);
  });

  auto* shape = cmd->add_subcommand(
      "shape", "A header-only (sparse) file with the exact tensors of a real model and quant mix");
  static std::string model_id, mix_name = "Q4_K_M", shape_out, catalogue, vocab;
  shape->add_option("--model", model_id, "catalogue id, e.g. qwen3-30b-a3b (see `agifarm synth list`)")
      ->required();
  shape->add_option("--quant", mix_name, "quant mix as llama-quantize names it: Q4_K_M, Q8_0, F16, ...")
      ->capture_default_str();
  shape->add_option("-o,--output", shape_out, "output .gguf path")->required();
  shape->add_option("--catalogue", catalogue, "model catalogue YAML (default: data/models.yaml)");
  shape->add_option("--vocab", vocab, "tokenizer GGUF (default: llama.cpp's models/ggml-vocab-<vocab>.gguf)");
  shape->callback([] {
    auto fail = [](const error& e) {
      std::cerr << "agifarm synth shape: " << e.message << "\n";
      throw CLI::RuntimeError(e.exit_code);
    };
    auto cat = synth::load_model_catalogue(catalogue.empty() ? synth::default_catalogue_path() : catalogue);
    if (!cat) fail(cat.err());
    auto m = synth::find_model(*cat, model_id);
    if (!m) fail(m.err());
    auto mix = synth::parse_quant_mix(mix_name);
    if (!mix) {
      std::string known;
      for (const auto& q : synth::all_quant_mixes())
        known += std::string(known.empty() ? "" : ", ") + std::string(q.name);
      fail(make_error(fmt::format("unknown --quant '{}' (known: {})", mix_name, known), 2));
    }
    synth::shape_options opt;
    opt.vocab_path = vocab;
    auto r = synth::write_shape_file(*m, *mix, shape_out, opt);
    if (!r) fail(r.err());
    fmt::print("wrote {} ({} {}: {} tensors, {:.2f} B parameters, {:.2f} GB apparent, {:.2f} MB on disk)\n",
               r->path, m->name, synth::to_string(*mix), r->n_tensors, static_cast<double>(r->n_params) / 1e9,
               static_cast<double>(r->file_bytes) / 1e9, static_cast<double>(r->disk_bytes) / 1e6);
  });

  auto* list =
      cmd->add_subcommand("list", "List catalogue models, one per line: id followed by its quant mixes");
  static bool all_mixes = false;
  list->add_flag("--all-mixes", all_mixes, "every mix the quantizer port knows, not just the common ones");
  list->add_option("--catalogue", catalogue, "model catalogue YAML (default: data/models.yaml)");
  list->callback([] {
    auto cat = synth::load_model_catalogue(catalogue.empty() ? synth::default_catalogue_path() : catalogue);
    if (!cat) {
      std::cerr << "agifarm synth list: " << cat.err().message << "\n";
      throw CLI::RuntimeError(cat.err().exit_code);
    }
    for (const auto& m : *cat) {
      std::string line = m.id;
      if (all_mixes) {
        for (const auto& q : synth::all_quant_mixes()) line += " " + std::string(q.name);
      } else {
        line += " Q4_K_M Q5_K_M Q6_K Q8_0 F16";
        if (!m.expert_source_type.empty()) line += " MXFP4_MOE";  // how gpt-oss is published
      }
      fmt::print("{}\n", line);
    }
  });
}

}  // namespace agifarm::cli
