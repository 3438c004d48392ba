// emit deepspeed: a DeepSpeed ZeRO-3 config, one Hugging Face Accelerate config per machine, the launch
// scripts and a small ZeRO-3 inference program for the plan's shard (its biggest multi-GPU backend).
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <map>

#include "emit/emit.hpp"
#include "emit/internal.hpp"

namespace agifarm::emit {
using namespace detail;
namespace json = boost::json;

namespace {

constexpr double k_gib = 1024.0 * 1024 * 1024;
constexpr int k_main_port = 29500;

// Lower-case letters and digits only: "NVIDIA GeForce RTX 2080 Ti" -> "nvidiageforcertx2080ti".
std::string squash(const std::string& s) {
  std::string out;
  for (char c : s)
    if (std::isalnum(static_cast<unsigned char>(c)))
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// bf16 needs NVIDIA compute capability 8.0 (Ampere) or newer, or an AMD GPU from CDNA2 / RDNA3 on.
// The plan names GPUs (catalogue ids such as "rtx3090" or reported names); older generations are
// recognised by name, everything else is taken as bf16-capable.
bool supports_bf16(const gpu_info& g) {
  if (!g.compute_capability.empty()) {
    try {
      return std::stod(g.compute_capability) >= 8.0;
    } catch (...) {
    }
  }
  std::string n = squash(g.name);
  auto has = [&](const char* x) { return n.find(x) != std::string::npos; };
  if (g.vendor == "amd")
    return !(has("mi25") || has("mi50") || has("mi60") || has("mi100") || has("vega") || has("rx5") ||
             has("rx6"));
  for (const char* old :
       {"v100", "teslat4", "p100", "p40", "p4", "k80", "m40", "gtx", "rtx20", "titanv", "titanrtx", "quadro"})
    if (has(old)) return false;
  return true;
}

std::string pretty(const json::value& v, int indent = 0) {
  std::string pad(indent, ' ');
  if (auto* o = v.if_object()) {
    if (o->empty()) return "{}";
    std::string s = "{\n";
    std::size_t i = 0;
    for (const auto& [k, val] : *o)
      s += pad + "  " + json::serialize(json::value(k)) + ": " + pretty(val, indent + 2) +
           (++i < o->size() ? ",\n" : "\n");
    return s + pad + "}";
  }
  return json::serialize(v);
}

}  // namespace

result<files> emit_deepspeed(const emit_input& in, const emit_options& opt) {
  auto p = check(in, opt);
  if (!p) return p.err();
  // The shard: the llama-server backend spanning the most GPUs (its own plus its RPC servers').
  const plan::backend_spec* shard = nullptr;
  std::vector<std::string> nodes;
  std::map<std::string, std::vector<int>> gpus;
  for (const auto& b : p->backends) {
    if (b.kind != plan::backend_kind::llama_server) continue;
    std::vector<std::string> ns{b.node};
    std::map<std::string, std::vector<int>> gs{{b.node, b.gpus}};
    for (const auto& d : b.depends_on) {
      const auto* db = find_backend(*p, d);
      if (!db || db->kind != plan::backend_kind::rpc_server) continue;
      if (std::find(ns.begin(), ns.end(), db->node) == ns.end()) ns.push_back(db->node);
      for (int g : db->gpus)
        if (std::find(gs[db->node].begin(), gs[db->node].end(), g) == gs[db->node].end())
          gs[db->node].push_back(g);
    }
    std::size_t count = 0, best = 0;
    for (const auto& [n, v] : gs) count += v.size();
    for (const auto& [n, v] : gpus) best += v.size();
    if (!shard || count > best) {
      shard = &b;
      nodes = ns;
      gpus = gs;
    }
  }
  if (!shard) return make_error("plan: no llama-server backend; nothing to shard with DeepSpeed", 2);
  std::size_t total = 0;
  int per_node = 1 << 30;
  for (const auto& n : nodes) {
    total += gpus[n].size();
    per_node = std::min<int>(per_node, static_cast<int>(gpus[n].size()));
  }
  if (total == 0)
    return make_error(fmt::format("plan: backend '{}' uses no GPU; DeepSpeed ZeRO-3 needs GPUs", shard->name),
                      3);
  const model_info* m = find_model(in, shard->model);

  // Precision from the GPU generation; offload from the 16-bit weights against GPU and host memory.
  bool bf16 = true;
  double gpu_bytes = 0, ram_bytes = 0;
  bool memory_known = true;
  for (const auto& n : nodes) {
    const node_info* ni = find_node(in, n);
    if (!ni || ni->ram_bytes == 0)
      memory_known = false;
    else
      ram_bytes += static_cast<double>(ni->ram_bytes);
    for (int g : gpus[n]) {
      bool found = false;
      if (ni)
        for (const auto& gi : ni->gpus)
          if (gi.index == g) {
            found = true;
            bf16 = bf16 && supports_bf16(gi);
            gpu_bytes += static_cast<double>(gi.memory_bytes);
          }
      if (!found) memory_known = false;
    }
  }
  double weights = m ? 2.0 * static_cast<double>(m->n_params) : 0;
  std::string offload = "none", why;
  if (!m || m->n_params == 0 || !memory_known) {
    why =
        "the plan does not give the model's size and every machine's memory: no offload (edit offload_param "
        "if it does not fit)";
  } else if (weights <= 0.85 * gpu_bytes) {
    why = fmt::format("16-bit weights {:.1f} GiB fit in 85% of the {:.1f} GiB of GPU memory: no offload",
                      weights / k_gib, gpu_bytes / k_gib);
  } else if (weights - 0.85 * gpu_bytes <= 0.7 * ram_bytes) {
    offload = "cpu";
    why = fmt::format(
        "16-bit weights {:.1f} GiB exceed 85% of the {:.1f} GiB of GPU memory but fit in system memory: "
        "parameters offloaded to CPU",
        weights / k_gib, gpu_bytes / k_gib);
  } else {
    offload = "nvme";
    why = fmt::format(
        "16-bit weights {:.1f} GiB exceed 85% of the GPU memory ({:.1f} GiB) plus 70% of the system memory "
        "({:.1f} GiB in all): parameters offloaded to NVMe at {}",
        weights / k_gib, gpu_bytes / k_gib, ram_bytes / k_gib, opt.nvme_path);
  }

  json::object zero{{"stage", 3},
                    {"overlap_comm", true},
                    {"contiguous_gradients", true},
                    {"stage3_max_live_parameters", 1000000000},
                    {"stage3_max_reuse_distance", 1000000000},
                    {"stage3_prefetch_bucket_size", 50000000},
                    {"stage3_param_persistence_threshold", 100000},
                    {"stage3_gather_16bit_weights_on_model_save", false}};
  if (offload == "cpu") zero["offload_param"] = json::object{{"device", "cpu"}, {"pin_memory", true}};
  if (offload == "nvme")
    zero["offload_param"] =
        json::object{{"device", "nvme"},  {"nvme_path", opt.nvme_path}, {"pin_memory", true},
                     {"buffer_count", 5}, {"buffer_size", 100000000},   {"max_in_cpu", 1000000000}};
  json::object ds;
  if (bf16)
    ds["bf16"] = json::object{{"enabled", true}};
  else
    ds["fp16"] = json::object{{"enabled", true}};
  ds["zero_optimization"] = zero;
  if (offload == "nvme")
    ds["aio"] = json::object{{"block_size", 1048576},
                             {"queue_depth", 8},
                             {"thread_count", 1},
                             {"single_submit", false},
                             {"overlap_events", true}};
  ds["train_micro_batch_size_per_gpu"] = 1;
  ds["gradient_accumulation_steps"] = 1;
  ds["steps_per_print"] = 2000;
  ds["wall_clock_breakdown"] = false;

  files out;
  out.push_back({"ds_zero3.json", pretty(ds) + "\n", false});

  const node_info* main_node = find_node(in, nodes.front());
  std::string main_ip = main_node && !main_node->address.empty() ? main_node->address : "127.0.0.1";
  std::string model_id = m && !m->hf_repo.empty() ? m->hf_repo : "";
  std::string vendor = vendor_of(in, *shard);
  for (std::size_t rank = 0; rank < nodes.size(); ++rank) {
    const auto& n = nodes[rank];
    std::string y = fmt::format(
        "# agifarm: Accelerate config of machine {} ('{}') of {}. Generated by `agifarm emit deepspeed`.\n",
        rank, n, nodes.size());
    y += "compute_environment: LOCAL_MACHINE\ndebug: false\n"
         "deepspeed_config:\n  deepspeed_config_file: ds_zero3.json\n  deepspeed_multinode_launcher: "
         "standard\n"
         "  zero3_init_flag: true\n"
         "distributed_type: DEEPSPEED\ndowncast_bf16: false\nenable_cpu_affinity: false\n";
    y += fmt::format(
        "machine_rank: {}\nmain_process_ip: {}\nmain_process_port: {}\nmain_training_function: main\n", rank,
        json::serialize(json::value(main_ip)), k_main_port);
    y += fmt::format(
        "num_machines: {}\nnum_processes: {}\nrdzv_backend: static\nsame_network: true\nuse_cpu: false\n",
        nodes.size(), static_cast<std::size_t>(per_node) * nodes.size());
    out.push_back({fmt::format("accelerate-{}.yaml", slug(n)), y, false});

    std::vector<int> used(gpus[n].begin(), gpus[n].begin() + per_node);
    std::string s = "#!/usr/bin/env bash\n";
    s += fmt::format(
        "# agifarm: ZeRO-3 inference, machine {} ('{}') of {}. Generated by `agifarm emit deepspeed`.\n",
        rank, n, nodes.size());
    s += fmt::format(
        "#   ./{}.sh [--prompt TEXT] [--max-new-tokens N]   (run on every machine; rank 0 prints the "
        "answer)\n",
        slug(n));
    s += "# Stop: Ctrl-C (or SIGTERM) on any machine ends every rank.\nset -euo pipefail\n";
    s += "cd \"$(dirname \"${BASH_SOURCE[0]}\")\"\n";
    if (model_id.empty())
      s += fmt::format("MODEL=\"${{MODEL:?set MODEL to the Hugging Face id of {} (its GGUF names none)}}\"\n",
                       shard->model);
    else
      s += fmt::format("MODEL=\"${{MODEL:-{}}}\"\n", model_id);
    s += fmt::format("export {}={}\n", vendor == "amd" ? "HIP_VISIBLE_DEVICES" : "CUDA_VISIBLE_DEVICES",
                     gpu_list(used));
    s += fmt::format(
        "exec accelerate launch --config_file accelerate-{}.yaml zero3_generate.py --model \"$MODEL\" "
        "\"$@\"\n",
        slug(n));
    out.push_back({slug(n) + ".sh", s, true});
  }

  std::string py = R"PY(#!/usr/bin/env python3
"""ZeRO-3 inference across the farm. Generated by `agifarm emit deepspeed`.

Every process (one per GPU, on every machine) holds a 1/N slice of the weights (ZeRO-3 partitioning, with
parameter offload to CPU or NVMe when ds_zero3.json says so); all ranks generate together (synced_gpus)
and rank 0 prints the answer. Started by the per-machine scripts through `accelerate launch`.
"""
import argparse
import json
import os

import deepspeed
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.integrations import HfDeepSpeedConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="Hugging Face model id or local directory")
    parser.add_argument("--prompt", default="Explain in one paragraph why the sky is blue.")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "ds_zero3.json"), encoding="utf-8") as f:
        ds_config = json.load(f)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    torch.cuda.set_device(local_rank)
    deepspeed.init_distributed()
    ds_config["train_batch_size"] = ds_config["train_micro_batch_size_per_gpu"] * world_size

    # Must exist before from_pretrained so the weights are loaded already partitioned (zero.Init).
    dschf = HfDeepSpeedConfig(ds_config)  # noqa: F841  (kept alive on purpose)
    dtype = torch.bfloat16 if ds_config.get("bf16", {}).get("enabled") else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype)
    engine = deepspeed.initialize(model=model, config_params=ds_config)[0]
    engine.module.eval()

    inputs = tokenizer(args.prompt, return_tensors="pt").to(torch.device("cuda", local_rank))
    with torch.no_grad():
        output = engine.module.generate(**inputs, max_new_tokens=args.max_new_tokens, synced_gpus=True)
    if int(os.environ.get("RANK", "0")) == 0:
        print(tokenizer.decode(output[0], skip_special_tokens=True))


if __name__ == "__main__":
    main()
)PY";
  out.push_back({"zero3_generate.py", py, true});

  std::string readme = fmt::format(
      "# DeepSpeed ZeRO-3 + Accelerate for this farm\n\nGenerated by `agifarm emit deepspeed` for the plan's "
      "shard: backend "
      "`{}` (model {}{}), {} GPU(s) on {} machine(s), {} process(es) per machine.\n\n",
      shard->name, shard->model, model_id.empty() ? "" : ", Hugging Face `" + model_id + "`", total,
      nodes.size(), per_node);
  readme += "| file | what |\n|---|---|\n| `ds_zero3.json` | DeepSpeed config: ZeRO stage 3";
  readme += bf16 ? ", bf16" : ", fp16";
  readme += offload == "none" ? "" : ", parameters offloaded to " + offload;
  readme += " |\n";
  for (std::size_t r = 0; r < nodes.size(); ++r)
    readme += fmt::format(
        "| `accelerate-{0}.yaml`, `{0}.sh` | machine rank {1} ({2}): Accelerate config and launch script |\n",
        slug(nodes[r]), r, nodes[r]);
  readme += "| `zero3_generate.py` | the inference program the scripts launch |\n\n";
  readme += fmt::format(
      "## Choices\n\n- Precision: {} ({}).\n- Offload: {}.\n- Main process: {}:{} (machine rank 0, node "
      "{}).\n\n",
      bf16 ? "bf16" : "fp16",
      bf16 ? "every GPU is Ampere / CDNA or newer" : "at least one GPU predates bf16 support", why, main_ip,
      k_main_port, nodes.front());
  readme +=
      "## Start\n\nInstall `deepspeed`, `accelerate`, `transformers` and `torch` on every machine and copy "
      "this directory "
      "to the same path on each. Then run `./NODE.sh --prompt \"...\"` on every machine (any order; they "
      "rendezvous at "
      "the main process). Rank 0 prints the answer.\n\n"
      "The one-line launch on each machine is `accelerate launch --config_file accelerate-NODE.yaml "
      "zero3_generate.py "
      "--model MODEL`.\n\n## Stop\n\nThe program exits after generating. Ctrl-C or SIGTERM on any machine "
      "stops every rank.\n";
  if (model_id.empty())
    readme +=
        "\nThe model's GGUF names no Hugging Face repository: set `MODEL` to the original (16-bit) "
        "repository before "
        "starting; DeepSpeed does not load GGUF files.\n";
  out.push_back({"README.md", readme, false});
  return out;
}

}  // namespace agifarm::emit
