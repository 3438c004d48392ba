#!/usr/bin/env bash
# User-space instructions per proxied request: agifarm's gateway vs nginx, each under valgrind's
# callgrind, the same wrk load through each to the same fixture backend, in one run. Instruction
# counts do not move with the machine's load, so on a shared box this compares the proxies' own work
# where requests/s and CPU time per request swing by 10-20 % between runs (kernel time is not counted:
# both proxies make the same system calls per request, see docs/benchmarks.md).
#
#   bench/gateway/instructions.sh [BUILD_DIR] [CONNS] [SECONDS]
#
# Prints, for non-streaming and streaming: requests counted, instructions per request for each proxy,
# and the ratio agifarm/nginx (below 1.0: agifarm does less work per request).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build/release}"
conns="${2:-64}"
secs="${3:-5}"
agifarm="$build/src/cli/agifarm"
fixture="$build/tests/gateway/gateway_fixture_backend"
for b in "$agifarm" "$fixture"; do [[ -x "$b" ]] || { echo "missing $b (build agifarm and gateway_fixture_backend)" >&2; exit 2; }; done
for t in wrk valgrind callgrind_control curl; do command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 2; }; done
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$nginx_bin" ]] || { echo "nginx is not installed" >&2; exit 2; }

work="$(mktemp -d /tmp/agifarm-gw-instr.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=bench/gateway/common.sh
source "$root/bench/gateway/common.sh"

be_port=$(free_port); gw_port=$(free_port); ng_port=$(free_port)
"$fixture" --port "$be_port" --threads 1 --chunks 16 >"$work/fixture.log" 2>&1 & pids+=($!)
wait_http "$be_port" /health
write_farm_yaml "$work/farm.yaml" "$gw_port" "$be_port" 1
write_nginx_conf "$work/nginx" "$ng_port" "$be_port" 1 "master_process off;"

# Instructions of one proxy under a load of `kind` requests: instrumentation is switched on only for
# the measured wrk run (after a warm-up run), then the profile is dumped and summed.
measure() {  # name port kind cmd...
  local name=$1 port=$2 kind=$3
  shift 3
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$name-$kind.cg" "$@" \
    >"$work/$name-$kind.log" 2>&1 &
  local vpid=$!
  wait_http "$port" /health
  wrk -t1 -c"$conns" -d2s -s "$work/$kind.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  local out
  out=$(wrk -t1 -c"$conns" -d"${secs}s" -s "$work/$kind.lua" "http://127.0.0.1:$port/v1/chat/completions")
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  callgrind_control -d "$vpid" >/dev/null 2>&1
  kill -INT "$vpid" 2>/dev/null || true
  sleep 1
  kill "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  local n ir
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  ir=$(cat "$work/$name-$kind".cg* | awk '/^(summary|totals):/ {print $2}' | sort -n | tail -1)
  echo "$name $kind $n $ir" >>"$work/results.txt"
}

# shellcheck disable=SC2034  # read through ${!body_var} below
body_plain='{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
# shellcheck disable=SC2034
body_stream='{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}'
for kind in plain stream; do
  body_var="body_$kind"
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "'${!body_var}'" >"$work/$kind.lua"
  measure agifarm "$gw_port" "$kind" "$agifarm" serve --config "$work/farm.yaml"
  measure nginx "$ng_port" "$kind" "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf"
done

python3 - "$work/results.txt" "$conns" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    name, kind, n, ir = line.split()
    r[(name, kind)] = (int(n), int(ir))
print(f"user-space instructions per request under callgrind, {sys.argv[2]} connections, 1 proxy thread")
print(f"{'workload':<16}{'agifarm req':>12}{'agifarm ins/req':>17}{'nginx req':>11}{'nginx ins/req':>15}{'ratio a/n':>11}")
for kind, label in (("plain", "non-streaming"), ("stream", "streaming(SSE)")):
    an, ai = r[("agifarm", kind)]
    nn, ni = r[("nginx", kind)]
    a, n = ai / max(an, 1), ni / max(nn, 1)
    print(f"{label:<16}{an:>12}{a:>17.0f}{nn:>11}{n:>15.0f}{a / n:>11.2f}")
PY
