#!/usr/bin/env bash
# The README's main command: installs what is needed (scripts/setup.sh), builds agifarm, and runs the
# main job on this machine: inspect + synth a tiny model, then serve it with llama-server and get one
# real chat completion. Later issues grow this into `agifarm up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target agifarm
agifarm=build/release/src/cli/agifarm
llama_bin="${AGIFARM_LLAMA_BIN:-$HOME/.cache/agifarm/llama.cpp-node-llama-cpp-3.22.1/build/bin}"
state="${AGIFARM_STATE_DIR:-$HOME/.local/state/agifarm}"
mkdir -p "$state/models"
model="$state/models/tiny-qwen3moe.gguf"

[[ -f "$model" ]] || "$agifarm" synth tiny --arch qwen3moe -o "$model"
"$agifarm" inspect "$model"
"$agifarm" synth shape --model qwen3-30b-a3b --quant Q4_K_M -o "$state/models/shape-qwen3-30b-a3b-Q4_K_M.gguf"
"$agifarm" inspect "$state/models/shape-qwen3-30b-a3b-Q4_K_M.gguf"

port=18181
"$llama_bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" -c 2048 -np 2 >"$state/run-llama-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { tail -20 "$state/run-llama-server.log"; exit 1; }
  sleep 0.5
done
echo "[run] POST /v1/chat/completions"
curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"Say hello to the farm."}],"max_tokens":16}'
echo
