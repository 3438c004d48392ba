#!/usr/bin/env bash
# Speed model check on this machine: predicted (agifarm estimate --speed, with the RAM bandwidth measured
# in the same run) versus llama-bench measured decode (tg) and prefill (pp) tokens/s for three synthesized
# models well beyond the CPU caches (0.9-1.6 GB). Prints one row per model and the ratio predicted/measured.
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
"$agifarm" hw --remeasure --json >"$work/hw.json"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); threads $threads"
python3 - "$work/hw.json" <<'PY'
import json, sys
n = json.load(open(sys.argv[1]))["nodes"][0]
print(f"RAM bandwidth {n['ram_bandwidth_bytes_per_s']/1e9:.1f} GB/s, CPU peak {n['cpu_peak_flops']/1e9:.0f} GFLOP/s")
PY
printf "%-9s %9s %9s %6s %9s %9s %6s\n" model pp_pred pp_meas ratio tg_pred tg_meas ratio
for m in dense-q8 dense-q4 moe-q8; do
  f=$work/$m.gguf
  pred=$("$agifarm" estimate --json --speed -- -m "$f" -ngl 0 -c 512 -np 1)
  "$bin/llama-bench" -m "$f" -p 64 -n 16 -t "$threads" -r 3 -o json >"$work/$m.bench.json" 2>/dev/null
  python3 - "$m" "$work/$m.bench.json" "$pred" <<'PY'
import json, sys
name, bench, pred = sys.argv[1], json.load(open(sys.argv[2])), json.loads(sys.argv[3])
pp = next(r["avg_ts"] for r in bench if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in bench if r["n_gen"] > 0)
print(f"{name:<9} {pred['prefill_tps']:9.1f} {pp:9.1f} {pred['prefill_tps']/pp:6.2f} {pred['decode_tps']:9.1f} {tg:9.1f} {pred['decode_tps']/tg:6.2f}")
PY
done
