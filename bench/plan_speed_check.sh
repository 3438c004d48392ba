#!/usr/bin/env bash
# Speed model check on this machine: predicted (agifarm estimate --speed, with the RAM bandwidth measured
# just before each model) versus llama-bench measured decode (tg32) and prefill (pp512) tokens/s for
# synthesized models well beyond the CPU caches (0.6-1.6 GB): dense Q8_0, dense Q4_0, MoE Q8_0, and a
# dense Q4_K_M made by llama-quantize. Prints one row per model and the ratio predicted/measured
# (medians of REPS llama-bench repetitions, default 5). These models are not the ones the CPU
# constants were fitted on (docs/benchmarks.md lists those).
#   bench/plan_speed_check.sh BUILD_DIR [WORK_DIR]
set -euo pipefail
build=${1:?usage: plan_speed_check.sh BUILD_DIR [WORK_DIR]}
work=${2:-$build/test-work/speed-check}
agifarm=$build/src/cli/agifarm
bin=${AGIFARM_LLAMA_BIN:-$HOME/.cache/agifarm/llama.cpp-node-llama-cpp-3.22.1/build/bin}
threads=${THREADS:-$(nproc)}
mkdir -p "$work"
synth() {  # name, flags...
  local f=$work/$1.gguf; shift
  [ -f "$f" ] || "$agifarm" synth tiny -o "$f" "$@" >/dev/null
}
synth dense-q8 --arch qwen3 --n-layer 8 --n-embd 2048 --n-head 16 --n-head-kv 4 --head-dim 128 --n-ff 6144 --type Q8_0
synth dense-q4 --arch qwen3 --n-layer 8 --n-embd 3072 --n-head 24 --n-head-kv 8 --head-dim 128 --n-ff 8192 --type Q4_0
synth moe-q8 --arch qwen3moe --n-layer 8 --n-embd 2048 --n-head 16 --n-head-kv 4 --head-dim 128 --n-expert 32 \
  --n-expert-used 4 --n-ff-exp 512 --type Q8_0
synth dense-f16 --arch qwen3 --n-layer 6 --n-embd 2048 --n-head 16 --n-head-kv 4 --head-dim 128 --n-ff 5632 --type F16
[ -f "$work/dense-q4km.gguf" ] || "$bin/llama-quantize" "$work/dense-f16.gguf" "$work/dense-q4km.gguf" Q4_K_M >/dev/null 2>&1
reps=${REPS:-5}
echo "threads $threads, llama-bench -p 512 -n 32 -r $reps (medians)"
printf "%-10s %6s %9s %9s %6s %9s %9s %6s  %s\n" model bw_GB/s pp_pred pp_meas ratio tg_pred tg_meas ratio "load average"
for m in dense-q8 dense-q4 moe-q8 dense-q4km; do
  f=$work/$m.gguf
  "$agifarm" hw --remeasure --json >"$work/hw.json"
  pred=$("$agifarm" estimate --json --speed -- -m "$f" -ngl 0 -c 1024 -np 1)
  "$bin/llama-bench" -m "$f" -p 512 -n 32 -t "$threads" -r "$reps" -o json >"$work/$m.bench.json" 2>/dev/null
  python3 - "$m" "$work/$m.bench.json" "$pred" "$work/hw.json" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, statistics, sys
name, bench, pred = sys.argv[1], json.load(open(sys.argv[2])), json.loads(sys.argv[3])
bw = json.load(open(sys.argv[4]))["nodes"][0]["ram_bandwidth_bytes_per_s"] / 1e9
med = lambda r: statistics.median(r["samples_ts"])
pp = next(med(r) for r in bench if r["n_prompt"] > 0)
tg = next(med(r) for r in bench if r["n_gen"] > 0)
print(f"{name:<10} {bw:6.1f} {pred['prefill_tps']:9.1f} {pp:9.1f} {pred['prefill_tps']/pp:6.2f} "
      f"{pred['decode_tps']:9.1f} {tg:9.1f} {pred['decode_tps']/tg:6.2f}  {sys.argv[5]}")
PY
done
