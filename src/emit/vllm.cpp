// emit vllm: `vllm serve` command lines for each llama-server backend of the plan (same address and
// port, same GPUs), with Ray head/worker processes when a shard spans nodes.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>

#include "emit/emit.hpp"
#include "emit/internal.hpp"
#include "emit/script.hpp"

namespace agifarm::emit {
using namespace detail;

namespace {

constexpr int k_ray_port = 6379;
constexpr double k_gib = 1024.0 * 1024 * 1024;

struct placement {
  std::vector<std::string> nodes;                // head (the llama-server's node) first
  std::map<std::string, std::vector<int>> gpus;  // per node
  bool trimmed = false;                          // nodes had unequal GPU counts; the smallest is used on each
};

placement place(const checked_plan& p, const plan::backend_spec& b) {
  placement pl;
  pl.nodes.push_back(b.node);
  pl.gpus[b.node] = b.gpus;
  for (const auto& d : b.depends_on) {
    const auto* db = find_backend(p, d);
    if (!db || db->kind != plan::backend_kind::rpc_server) continue;
    if (std::find(pl.nodes.begin(), pl.nodes.end(), db->node) == pl.nodes.end()) pl.nodes.push_back(db->node);
    auto& g = pl.gpus[db->node];
    for (int x : db->gpus)
      if (std::find(g.begin(), g.end(), x) == g.end()) g.push_back(x);
  }
  // vLLM's multi-node layout is tensor parallel inside a node x pipeline parallel across nodes: every node
  // must bring the same number of GPUs, so each gives the smallest count (its first GPUs).
  if (pl.nodes.size() > 1) {
    std::size_t least = SIZE_MAX;
    for (const auto& n : pl.nodes) least = std::min(least, pl.gpus[n].size());
    for (const auto& n : pl.nodes)
      if (pl.gpus[n].size() > least) {
        pl.gpus[n].resize(least);
        pl.trimmed = true;
      }
  }
  return pl;
}

struct serve_line {
  std::string name;  // backend name
  std::string node;
  std::vector<std::string> argv;
  std::string env;  // VAR=value for the GPUs of the head node
  std::string comment;
  std::vector<std::string> workers;  // other nodes (Ray)
  int world = 0;
  int port = 0;
  std::string host;
};

std::string visible_var(const std::string& vendor) {
  return vendor == "amd" ? "HIP_VISIBLE_DEVICES" : "CUDA_VISIBLE_DEVICES";
}

}  // namespace

result<files> emit_vllm(const emit_input& in, const emit_options& opt) {
  auto p = check(in, opt);
  if (!p) return p.err();

  // How many vLLM servers share each GPU (node, index): they split --gpu-memory-utilization.
  std::map<std::pair<std::string, int>, int> sharing;
  std::vector<std::pair<const plan::backend_spec*, placement>> servers;
  for (const auto& b : p->backends) {
    if (b.kind != plan::backend_kind::llama_server) continue;
    auto pl = place(*p, b);
    for (const auto& [node, gs] : pl.gpus)
      for (int g : gs) ++sharing[{node, g}];
    servers.emplace_back(&b, pl);
  }
  if (servers.empty()) return make_error("plan: no llama-server backend; nothing for vLLM to serve", 2);

  std::map<std::string, std::vector<std::string>> served_names;  // backend -> pool name + aliases
  for (const auto& pool : in.deployment.pools)
    for (const auto& bn : pool.backends) {
      auto& v = served_names[bn];
      v.push_back(pool.name);
      v.insert(v.end(), pool.aliases.begin(), pool.aliases.end());
    }

  std::vector<serve_line> lines;
  std::map<std::string, std::string> ray_role;  // node -> "head HEADNODE" / "worker HEADNODE"
  for (const auto& [bp, pl] : servers) {
    const auto& b = *bp;
    const model_info* m = find_model(in, b.model);
    serve_line l;
    l.name = b.name;
    l.node = b.node;
    l.host = b.host;
    l.port = b.port;
    std::string comment = fmt::format("# {}: model {}", b.name, b.model.empty() ? "?" : b.model);
    std::string model_id;
    if (m && !m->hf_repo.empty()) {
      model_id = m->hf_repo;
      comment += fmt::format(" = Hugging Face {} (named by the GGUF metadata)\n", m->hf_repo);
    } else {
      model_id = b.model_file;
      comment +=
          "\n#   the GGUF names no Hugging Face repository: vLLM loads the GGUF file itself (experimental in "
          "vLLM;\n"
          "#   add --tokenizer <the original Hugging Face repo> for its tokenizer)\n";
    }
    std::size_t n_nodes = pl.nodes.size();
    int per_node = 1 << 30;
    int total = 0;
    for (const auto& n : pl.nodes) {
      per_node = std::min<int>(per_node, static_cast<int>(pl.gpus.at(n).size()));
      total += static_cast<int>(pl.gpus.at(n).size());
    }
    int tp = 1, pp = 1;
    if (n_nodes == 1) {
      tp = std::max(1, per_node);
      if (m && m->n_heads > 0 && m->n_heads % tp != 0) {
        comment += fmt::format(
            "#   {} attention heads do not divide by {} GPUs: pipeline parallel instead of tensor parallel\n",
            m->n_heads, tp);
        pp = tp;
        tp = 1;
      }
    } else {
      tp = std::max(1, per_node);
      pp = static_cast<int>(n_nodes);
      if (pl.trimmed)
        comment += fmt::format(
            "#   the nodes bring different GPU counts; vLLM needs equal ones: {} GPU(s) per node are used\n",
            tp);
    }
    if (total == 0) comment += "#   this backend uses no GPU: it needs vLLM's CPU build\n";
    l.world = tp * pp;
    std::vector<std::string> a{"vllm", "serve", model_id};
    std::vector<std::string> names = served_names[b.name];
    if (names.empty()) names.push_back(b.model.empty() ? b.name : b.model);
    a.push_back("--served-model-name");
    a.insert(a.end(), names.begin(), names.end());
    a.insert(a.end(), {"--host", b.host, "--port", std::to_string(b.port)});
    if (tp > 1) a.insert(a.end(), {"--tensor-parallel-size", std::to_string(tp)});
    if (pp > 1) a.insert(a.end(), {"--pipeline-parallel-size", std::to_string(pp)});
    if (n_nodes > 1) a.insert(a.end(), {"--distributed-executor-backend", "ray"});
    // Memory: 90% of each GPU, split between the servers that share it.
    int share = 1;
    std::uint64_t gpu_bytes = 0;
    std::string vendor = vendor_of(in, b);
    for (const auto& n : pl.nodes) {
      const node_info* ni = find_node(in, n);
      for (int g : pl.gpus.at(n)) {
        share = std::max(share, sharing[{n, g}]);
        if (ni)
          for (const auto& gi : ni->gpus)
            if (gi.index == g) gpu_bytes += gi.memory_bytes;
      }
    }
    double util = std::floor(90.0 / share) / 100.0;
    if (total > 0) a.insert(a.end(), {"--gpu-memory-utilization", fmt::format("{:.2f}", util)});
    if (b.ctx > 0) a.insert(a.end(), {"--max-model-len", std::to_string(b.ctx / std::max(1, b.slots))});
    a.insert(a.end(), {"--max-num-seqs", std::to_string(std::max(1, b.slots))});
    if (m && m->n_experts > 0 && tp * pp > 1) a.push_back("--enable-expert-parallel");
    // vLLM holds 16-bit weights: when they do not fit the GPUs, offload the rest to CPU memory.
    if (m && m->n_params > 0 && gpu_bytes > 0 && total > 0) {
      double weights = 2.0 * static_cast<double>(m->n_params);
      double room = static_cast<double>(gpu_bytes) * util * 0.8;  // leave 20% of vLLM's share for KV cache
      if (weights > room) {
        int per_gpu = static_cast<int>(std::ceil((weights - room) / total / k_gib));
        a.insert(a.end(), {"--cpu-offload-gb", std::to_string(per_gpu)});
        comment += fmt::format(
            "#   16-bit weights {:.0f} GiB exceed the GPUs' share: {} GiB per GPU offloaded to CPU memory\n",
            weights / k_gib, per_gpu);
      }
    }
    l.argv = a;
    if (!pl.gpus.at(b.node).empty()) l.env = visible_var(vendor) + "=" + gpu_list(pl.gpus.at(b.node));
    l.comment = comment;
    for (std::size_t i = 1; i < n_nodes; ++i) {
      l.workers.push_back(pl.nodes[i]);
      ray_role[pl.nodes[i]] = b.node;
    }
    if (n_nodes > 1) ray_role[b.node] = "";
    lines.push_back(std::move(l));
  }

  files out;
  std::string readme =
      "# vLLM command lines for this farm\n\nGenerated by `agifarm emit vllm`. One script per node; each "
      "`vllm serve` takes the address and port of the llama-server backend it replaces, so the gateway's "
      "plan stays valid.\n\n";
  std::vector<std::string> nodes;
  for (const auto& n : p->node_names)
    if (std::any_of(lines.begin(), lines.end(), [&](const serve_line& l) { return l.node == n; }) ||
        ray_role.count(n))
      nodes.push_back(n);
  for (const auto& node : nodes) {
    script_spec spec;
    spec.usage_name = slug(node) + ".sh";
    spec.title =
        fmt::format("# agifarm: vLLM servers of node '{}' ({} plan). Generated by `agifarm emit vllm`.\n",
                    node, in.deployment.strategy.empty() ? "unnamed" : in.deployment.strategy);
    spec.header += "# Environment: AGIFARM_STATE_DIR (pid files, logs), START_TIMEOUT, STOP_TIMEOUT.\n";
    spec.settings.push_back(fmt::format(
        "STATE_DIR=\"${{AGIFARM_STATE_DIR:-${{XDG_STATE_HOME:-$HOME/.local/state}}/agifarm/vllm-{}}}\"",
        slug(node)));
    const node_info* ni = find_node(in, node);
    std::string addr = ni && !ni->address.empty() ? ni->address : "127.0.0.1";
    auto role = ray_role.find(node);
    if (role != ray_role.end()) {
      std::vector<int> node_gpus;
      for (const auto& [bp, pl] : servers)
        if (auto it = pl.gpus.find(node); it != pl.gpus.end())
          for (int g : it->second)
            if (std::find(node_gpus.begin(), node_gpus.end(), g) == node_gpus.end()) node_gpus.push_back(g);
      std::string vis =
          node_gpus.empty()
              ? ""
              : fmt::format("env {}={} ",
                            visible_var(ni && !ni->gpus.empty() ? ni->gpus[0].vendor : "nvidia"),
                            gpu_list(node_gpus));
      script_process ray;
      if (role->second.empty()) {
        ray.name = "ray-head";
        ray.comment = "# The Ray head of the multi-node vLLM servers started below.\n";
        ray.command = fmt::format("{}ray start --head --block --port={} --node-ip-address={} --num-gpus={}",
                                  vis, k_ray_port, addr, node_gpus.size());
        ray.ready = fmt::format("tcp_open {} {}", addr, k_ray_port);
      } else {
        const node_info* head = find_node(in, role->second);
        std::string head_addr = head && !head->address.empty() ? head->address : "127.0.0.1";
        ray.name = "ray-worker";
        ray.comment = fmt::format("# A Ray worker of the head on node '{}'.\n", role->second);
        ray.command = fmt::format("{}ray start --block --address={}:{} --node-ip-address={} --num-gpus={}",
                                  vis, head_addr, k_ray_port, addr, node_gpus.size());
        ray.ready = "pid_of ray-worker >/dev/null";
        ray.wait_remote =
            fmt::format("wait_tcp ray-head {} {} {}", sh_quote(role->second), head_addr, k_ray_port);
      }
      spec.processes.push_back(ray);
    }
    for (const auto& l : lines) {
      if (l.node != node) continue;
      script_process proc;
      proc.name = l.name;
      proc.comment = l.comment;
      std::string cmd;
      for (std::size_t i = 0; i < l.argv.size(); ++i) {
        bool option = l.argv[i].rfind("--", 0) == 0;
        if (i > 0) cmd += option ? " \\\n    " : " ";
        cmd += sh_quote(l.argv[i]);
      }
      proc.command = (l.env.empty() ? "" : "env " + sh_quote(l.env) + " ") + cmd;
      proc.ready = fmt::format("http_ok {} {} /health", reach_host(l.host), l.port);
      if (!l.workers.empty()) {
        proc.wait_remote = fmt::format("wait_ray_gpus {}", l.world);
        spec.functions =
            "# wait_ray_gpus N: the Ray cluster has N GPUs (every worker node joined).\n"
            "wait_ray_gpus() {\n  local deadline=$((SECONDS + START_TIMEOUT)) have\n"
            "  log \"waiting for $1 GPUs in the Ray cluster (start the worker nodes)\"\n"
            "  while :; do\n"
            "    have=$(ray status 2>/dev/null | sed -n 's|.*/\\([0-9]*\\)\\.[0-9]* GPU.*|\\1|p' | head -n "
            "1)\n"
            "    if [[ -n \"$have\" ]] && ((have >= $1)); then return 0; fi\n"
            "    if ((SECONDS >= deadline)); then log \"error: the Ray cluster has ${have:-no} GPUs, $1 "
            "needed\"; return 1; fi\n"
            "    sleep 1\n  done\n}\n\n";
      }
      spec.processes.push_back(proc);
    }
    out.push_back({slug(node) + ".sh", process_script(spec), true});
    readme += fmt::format("- `{}.sh`: node {}\n", slug(node), node);
  }
  readme += "\n## Start\n\n`./NODE.sh start` on each node";
  readme += ray_role.empty()
                ? ".\n"
                : "; on multi-node shards, the head node's script starts the Ray head and waits until the "
                  "workers (`./NODE.sh start` on the other nodes) have joined with all their GPUs.\n";
  readme +=
      "\nEach server is ready when its `/health` answers; logs and pid files go to `AGIFARM_STATE_DIR`.\n\n"
      "## Stop\n\n`./NODE.sh stop` (SIGTERM to each process group, SIGKILL after `STOP_TIMEOUT` seconds).\n\n"
      "## How the plan maps to vLLM\n\n"
      "- A llama-server on N GPUs of one node becomes `--tensor-parallel-size N` (pipeline parallel when the "
      "model's "
      "attention heads do not divide by N); a shard over several nodes becomes tensor parallel inside a node "
      "and "
      "`--pipeline-parallel-size` across nodes, on Ray.\n"
      "- `--gpu-memory-utilization` is 0.90 split among servers sharing a GPU; `--max-model-len` is the "
      "context per "
      "slot (llama.cpp's `-c` divided by `-np`); `--max-num-seqs` is the slot count; MoE models get "
      "`--enable-expert-parallel`.\n"
      "- vLLM holds 16-bit weights (not the GGUF's quantized ones): when those exceed the GPUs' share, "
      "`--cpu-offload-gb` moves the rest to system memory.\n";
  out.push_back({"README.md", readme, false});
  return out;
}

}  // namespace agifarm::emit
