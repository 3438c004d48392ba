#!/usr/bin/env bash
# The README's main command: installs what is needed (scripts/setup.sh), builds agifarm, and runs the
# main job on this machine: `agifarm up` with the embedded default (it discovers the hardware,
# synthesizes the tiny demo model and runs two replicas behind the gateway on 127.0.0.1:8080), then
# one real chat completion through the gateway. The farm keeps running; `agifarm down` stops it.
#   AGIFARM_RUN_STOP=1   stop the farm again at the end (what CI-like runs want)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target agifarm
agifarm="$PWD/build/release/src/cli/agifarm"

echo "[run] agifarm hw"
"$agifarm" hw
if "$agifarm" status >/dev/null 2>&1; then
  echo "[run] a farm is already running:"
  "$agifarm" status
else
  "$agifarm" up --detach
fi
"$agifarm" status

echo "[run] POST http://127.0.0.1:8080/v1/chat/completions (model \"fast\")"
answer=$(curl -fsS --max-time 120 http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
  -d '{"model":"fast","messages":[{"role":"user","content":"Say hello to the farm."}],"max_tokens":24}')
echo "$answer"
echo "$answer" | grep -q '"choices"' || { echo "[run] no completion in the answer" >&2; exit 1; }

if [[ "${AGIFARM_RUN_STOP:-0}" == 1 ]]; then
  "$agifarm" down
else
  echo "[run] the farm is running at http://127.0.0.1:8080/v1 — stop it with: $agifarm down"
fi
