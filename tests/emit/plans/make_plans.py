#!/usr/bin/env python3
"""Writes the four plan fixtures of the emit golden tests (plan format: docs/plan-format.md).

They are written by hand, not by the planner, so that emit's tests do not move when the planner's
numbers change: one GPU; 2x RTX 3090 in one box (a 235B MoE with expert offload, written as one -ot
rule per layer as a planner might); 8 GPUs in one box (hybrid: a 4-GPU sharded core + 4 helper
replicas); 3 nodes (a cross-node RPC shard on 'big', plus a CPU replica of a small model on 'old', a node
other than the gateway's, which emit binds to old's address behind the farm's backend key). Run: python3 make_plans.py (from this directory).
"""
import json

GIB = 1 << 30


def gpu(i, name, vram_gib, vendor="nvidia"):
    return {"index": i, "name": name, "vendor": vendor, "vram_bytes": vram_gib * GIB,
            "bandwidth_bytes_per_s": 9.36e11, "fp16_tflops": 142}


def node(name, address, gpus, cores, ram_gib):
    return {"name": name, "address": address, "cpu_cores": cores, "ram_bytes": ram_gib * GIB,
            "ram_bandwidth_bytes_per_s": 5.0e10, "gpus": gpus}


def model(name, file, arch, hf, n_params, file_bytes, n_layers, n_experts=0, quant="Q4_K"):
    return {"name": name, "file": file, "architecture": arch, "hf_repo": hf, "n_params": n_params,
            "file_bytes": file_bytes, "n_layers": n_layers, "n_experts": n_experts, "quant": quant,
            "known_architecture": True}


def pred(devices, host_bytes, decode):
    return {"devices": [{"name": n, "model_bytes": b, "context_bytes": c, "compute_bytes": k,
                         "total_bytes": b + c + k} for (n, b, c, k) in devices],
            "host": {"name": "host", "model_bytes": host_bytes, "context_bytes": 0, "compute_bytes": 0,
                     "total_bytes": host_bytes},
            "decode_tps": decode, "prefill_tps": decode * 20, "aggregate_decode_tps": decode * 2.5}


def server(name, node, model_name, file, gpus, port, args, slots, ctx, env=None, deps=(), host="127.0.0.1", p=None):
    b = {"name": name, "kind": "llama-server", "node": node, "model": model_name, "model_file": file,
         "gpus": gpus, "host": host, "port": port, "args": ["-m", file, "-c", str(ctx), "-np", str(slots)] + args,
         "env": env if env is not None else {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))},
         "depends_on": list(deps), "slots": slots, "ctx": ctx}
    if p:
        b["predicted"] = p
    return b


def rpc(name, node, gpu_index, host, port):
    return {"name": name, "kind": "ggml-rpc-server", "node": node, "model": "", "model_file": "",
            "gpus": [gpu_index], "host": host, "port": port, "args": [],
            "env": {"CUDA_VISIBLE_DEVICES": str(gpu_index)}, "depends_on": [], "slots": 1, "ctx": 0}


def doc(nodes, models, roles, strategy, backends, pools, links=()):
    return {"version": 1, "inventory": {"nodes": nodes, "links": list(links)}, "models": models, "roles": roles,
            "candidates": [], "recommendation": {"strategy": strategy, "candidate": -1, "reasons": []},
            "deployment": {"strategy": strategy, "backends": backends, "pools": pools}, "warnings": []}


def pool(name, aliases, backends, priority=0, balance="least_outstanding"):
    return {"name": name, "aliases": aliases, "backends": backends, "balance": balance, "priority": priority}


QWEN8 = "/models/Qwen3-8B-Q4_K_M.gguf"
QWEN4 = "/models/Qwen3-4B-Q4_K_M.gguf"
QWEN32 = "/models/Qwen3-32B-Q4_K_M.gguf"
QWEN235 = "/models/Qwen3-235B-A22B-Q4_K_M-00001-of-00003.gguf"

plans = {}

plans["one-gpu"] = doc(
    [node("box", "127.0.0.1", [gpu(0, "rtx4090", 24)], 16, 64)],
    [model("qwen3-8b", QWEN8, "qwen3", "https://huggingface.co/Qwen/Qwen3-8B", 8190735360, 5027783488, 36)],
    [{"name": "fast", "model": "qwen3-8b", "ctx": 8192, "agents": 4}],
    "replica",
    [server("qwen3-8b-r0", "box", "qwen3-8b", QWEN8, [0], 8081, ["-ngl", "999", "-fa", "on"], 4, 32768,
            p=pred([("CUDA0", 4681 << 20, 4608 << 20, 304 << 20)], 0, 128.5))],
    [pool("qwen3-8b", ["fast", "code"], ["qwen3-8b-r0"])])

per_layer_cpu = []
for layer in range(0, 70):
    per_layer_cpu += ["-ot", "blk\\.%d\\.ffn_(up|down|gate)_exps=CPU" % layer]
plans["two-3090"] = doc(
    [node("box", "127.0.0.1", [gpu(0, "rtx3090", 24), gpu(1, "rtx3090", 24)], 24, 256)],
    [model("qwen3-235b-a22b", QWEN235, "qwen3moe", "https://huggingface.co/Qwen/Qwen3-235B-A22B", 235093634560,
           142652866560, 94, 128)],
    [{"name": "think", "model": "qwen3-235b-a22b", "ctx": 32768, "agents": 1}],
    "expert_offload",
    [server("qwen3-235b-a22b-0", "box", "qwen3-235b-a22b", QWEN235, [0, 1], 8081,
            ["-ngl", "999", "-ts", "1,1", "-sm", "layer", "-fa", "on"] + per_layer_cpu + ["--no-mmap"], 1, 32768,
            p=pred([("CUDA0", 19 * GIB, 1536 << 20, 800 << 20), ("CUDA1", 19 * GIB, 1536 << 20, 800 << 20)],
                   102 * GIB, 9.5))],
    [pool("qwen3-235b-a22b", ["think"], ["qwen3-235b-a22b-0"])])

eight = [gpu(i, "rtx4090", 24) for i in range(8)]
helpers = [server("qwen3-4b-r%d" % i, "box", "qwen3-4b", QWEN4, [4 + i], 8082 + i, ["-ngl", "999", "-fa", "on"], 4,
                  32768, p=pred([("CUDA0", 2382 << 20, 4608 << 20, 304 << 20)], 0, 190.0)) for i in range(4)]
plans["eight-gpu"] = doc(
    [node("box", "127.0.0.1", eight, 64, 512)],
    [model("qwen3-32b", QWEN32, "qwen3", "https://huggingface.co/Qwen/Qwen3-32B", 32762123264, 19762149440, 64),
     model("qwen3-4b", QWEN4, "qwen3", "https://huggingface.co/Qwen/Qwen3-4B", 4022468096, 2497280960, 36)],
    [{"name": "think", "model": "qwen3-32b", "ctx": 65536, "agents": 2},
     {"name": "fast", "model": "qwen3-4b", "ctx": 8192, "agents": 16},
     {"name": "code", "model": "qwen3-4b", "ctx": 8192, "agents": 16}],
    "hybrid",
    [server("qwen3-32b-core", "box", "qwen3-32b", QWEN32, [0, 1, 2, 3], 8081,
            ["-ngl", "999", "-ts", "1,1,1,1", "-sm", "layer", "-fa", "on"], 2, 131072,
            p=pred([("CUDA%d" % i, 4712 << 20, 8 * GIB, 600 << 20) for i in range(4)], 0, 38.0))] + helpers,
    [pool("qwen3-32b", ["think"], ["qwen3-32b-core"], priority=0, balance="prefix_affinity"),
     pool("qwen3-4b", ["fast", "code"], [h["name"] for h in helpers], priority=10)])

rpcs = [rpc("rpc-work-gpu0", "work", 0, "192.168.1.11", 50052), rpc("rpc-work-gpu1", "work", 1, "192.168.1.11", 50053),
        rpc("rpc-old-gpu0", "old", 0, "192.168.1.12", 50052)]
plans["three-nodes"] = doc(
    [node("big", "192.168.1.10", [gpu(0, "rtxpro6000", 96), gpu(1, "rtx5090", 32), gpu(2, "rtx5090", 32)], 32, 512),
     node("work", "192.168.1.11", [gpu(0, "rtxa6000", 48), gpu(1, "RTX 4060 Ti 16GB", 16)], 24, 128),
     node("old", "192.168.1.12", [gpu(0, "rtx3090", 24)], 6, 64)],
    [model("qwen3-235b-a22b", QWEN235, "qwen3moe", "https://huggingface.co/Qwen/Qwen3-235B-A22B", 235093634560,
           142652866560, 94, 128),
     model("qwen3-4b", QWEN4, "qwen3", "https://huggingface.co/Qwen/Qwen3-4B", 4022468096, 2497280960, 36)],
    [{"name": "think", "model": "qwen3-235b-a22b", "ctx": 32768, "agents": 2},
     {"name": "fast", "model": "qwen3-4b", "ctx": 8192, "agents": 2}],
    "shard_rpc",
    rpcs + [server("qwen3-235b-a22b-shard", "big", "qwen3-235b-a22b", QWEN235, [0, 1, 2], 8081,
                   ["-ngl", "999", "-ts", "96,32,32,48,16,24", "-sm", "layer", "-fa", "on", "--rpc",
                    "192.168.1.11:50052,192.168.1.11:50053,192.168.1.12:50052"], 2, 65536,
                   deps=[r["name"] for r in rpcs]),
            # Planned on loopback, as the planner writes llama-servers; emit binds it to old's address.
            server("qwen3-4b-old", "old", "qwen3-4b", QWEN4, [], 8081, ["-ngl", "0", "-t", "6"], 2, 16384, env={})],
    [pool("qwen3-235b-a22b", ["think"], ["qwen3-235b-a22b-shard"]),
     pool("qwen3-4b", ["fast"], ["qwen3-4b-old"], priority=10)],
    links=[{"kind": "ethernet", "node_a": "big", "node_b": "work", "gpus": [], "bandwidth_bytes_per_s": 1.25e9,
            "latency_s": 1e-4}])

for name, d in plans.items():
    with open(name + ".json", "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
