#!/usr/bin/env bash
# Gateway throughput/latency benchmark: the fixture backend (fixed JSON and SSE) measured directly,
# through agifarm's gateway and through nginx (a plain reverse proxy with keep-alive upstreams, run
# unprivileged with its own prefix), driven by wrk at 64 and 256 connections, non-streaming and
# streaming, all in one run. Prints requests/s, p99 latency, the ratio gateway/nginx and the p99
# each proxy adds over direct.
#
#   [ROUNDS=3] bench/gateway/run.sh [BUILD_DIR] [SECONDS] [PROXY_THREADS]
#
# Each (target, workload, connections) is measured ROUNDS times, interleaved; the table shows medians.
#
# Two measures, as proxy benchmarks usually separate them:
# - saturation (wrk's closed loop: every connection sends its next request as soon as the last one is
#   answered): requests/s, the throughput goal. Here latency is mostly queueing: by Little's law the
#   mean is connections / requests/s, so whatever halves the machine's throughput (a proxy sharing the
#   2 cores with wrk and the backend) adds connections/rps to it; at 256 connections that is several ms
#   for any proxy, and "+p99" in this table measures throughput more than the proxy's own delay.
# - paced (PACED_RPS, default 10000 requests/s offered in all, well below every target's capacity: each
#   connection waits a random 0-2x connections/PACED_RPS between its requests, via wrk's delay() hook):
#   the p99 the proxy itself adds to a request, the latency goal.
# BUILD_DIR defaults to build/release (needs src/cli/agifarm and tests/gateway/gateway_fixture_backend).
# PROXY_THREADS (default 1) is used for both proxies: agifarm threads = nginx worker_processes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build/release}"
secs="${2:-5}"
pthreads="${3:-1}"
agifarm="$build/src/cli/agifarm"
fixture="$build/tests/gateway/gateway_fixture_backend"
for b in "$agifarm" "$fixture"; do [[ -x "$b" ]] || { echo "missing $b (build agifarm and gateway_fixture_backend)" >&2; exit 2; }; done
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 2; }
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { echo "nginx is not installed" >&2; exit 2; }
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

work="$(mktemp -d /tmp/agifarm-gw-bench.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
[[ -n "${KEEP:-}" ]] && trap - EXIT

# shellcheck source=bench/gateway/common.sh
source "$root/bench/gateway/common.sh"

be_port=$(free_port); gw_port=$(free_port); ng_port=$(free_port)
"$fixture" --port "$be_port" --threads 1 --chunks 16 >"$work/fixture.log" 2>&1 & pids+=($!); be_pid=$!
wait_http "$be_port" /health

write_farm_yaml "$work/farm.yaml" "$gw_port" "$be_port" "$pthreads"
"$agifarm" serve --config "$work/farm.yaml" >"$work/gateway.log" 2>&1 & pids+=($!); gw_pid=$!
wait_http "$gw_port" /health

write_nginx_conf "$work/nginx" "$ng_port" "$be_port" "$pthreads"
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx/stdout.log" 2>&1 & pids+=($!); ng_pid=$!
wait_http "$ng_port" /health

# shellcheck disable=SC2034  # read through ${!body_var} below
body_plain='{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
# shellcheck disable=SC2034
body_stream='{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}'
paced_rps="${PACED_RPS:-10000}"
for kind in plain stream; do
  body_var="body_$kind"
  cat >"$work/$kind.lua" <<LUA
wrk.method = "POST"
wrk.body = '${!body_var}'
wrk.headers["Content-Type"] = "application/json"
LUA
  for conns in 64 256; do
    # Each connection's pause after an answer: uniform in [0, 2 x conns/paced_rps] ms (wrk's delay()
    # has ms granularity), so that the connections do not fire in step (a fixed pause keeps all of
    # them in phase: bursts of `conns` requests at once, whose queueing swamps the proxies' own delay).
    { cat "$work/$kind.lua"
      echo "function init(args) math.randomseed(math.floor(os.clock() * 1e9) + os.time()) end"
      echo "function delay() return math.random(0, $(( 2 * conns * 1000 / paced_rps ))) end"; } >"$work/$kind-paced-$conns.lua"
  done
done

results="$work/results.txt"
: >"$results"
# CPU time (clock ticks, user + system) of a process and its children (nginx's workers).
cpu_ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)
run_wrk() {  # name port kind conns pid [script]
  local out before after
  before=$(cpu_ticks "$5")
  out=$(wrk -t2 -c"$4" -d"${secs}s" --latency -s "${6:-$work/$3.lua}" "http://127.0.0.1:$2/v1/chat/completions")
  after=$(cpu_ticks "$5")
  local rps p99 errs n cpu
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  # CPU microseconds the process (direct: the backend; otherwise the proxy) spent per request.
  cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "sock:" $0}' <<<"$out" | tr '\n' ' ')
  echo "$1 $3 $4 $rps $p99 $cpu ${errs:-none}" >>"$results"
}
rounds="${ROUNDS:-3}"
for _ in $(seq 1 "$rounds"); do
  for kind in plain stream; do
    for conns in 64 256; do
      # Interleave the three targets so drifting machine load hits all of them alike.
      run_wrk direct "$be_port" "$kind" "$conns" "$be_pid"
      run_wrk agifarm "$gw_port" "$kind" "$conns" "$gw_pid"
      run_wrk nginx "$ng_port" "$kind" "$conns" "$ng_pid"
      paced="$work/$kind-paced-$conns.lua"
      run_wrk direct "$be_port" "$kind-paced" "$conns" "$be_pid" "$paced"
      run_wrk agifarm "$gw_port" "$kind-paced" "$conns" "$gw_pid" "$paced"
      run_wrk nginx "$ng_port" "$kind-paced" "$conns" "$ng_pid" "$paced"
    done
  done
done

python3 - "$results" "$pthreads" <<'PY'
import sys
rows = [l.split(None, 6) for l in open(sys.argv[1]) if l.strip()]
def ms(s):
    if s.endswith("us"): return float(s[:-2]) / 1000
    if s.endswith("ms"): return float(s[:-2])
    if s.endswith("s"): return float(s[:-1]) * 1000
    return float(s)
import statistics
runs = {}
for r in rows:
    runs.setdefault((r[0], r[1], r[2]), []).append((float(r[3]), ms(r[4]), float(r[5]), r[6].strip()))
# Median over the rounds (the machine is shared; single runs swing).
d = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v), statistics.median(x[2] for x in v),
         " ".join(x[3] for x in v if x[3] != "none") or "none") for k, v in runs.items()}
print(f"proxy threads/workers: {sys.argv[2]}; median of {len(next(iter(runs.values())))} rounds")
print("rps: requests/s; +p99: the proxy's p99 minus direct's; CPU/req: the proxy process's CPU time per request")
print(f"{'workload':<16}{'conns':>6}{'direct rps':>12}{'agifarm rps':>13}{'nginx rps':>11}{'ratio a/n':>10}"
      f"{'p99 direct':>11}{'+p99 agifarm':>13}{'+p99 nginx':>11}{'CPU/req agifarm':>16}{'CPU/req nginx':>14}")
for kind in ("plain", "stream"):
    for c in ("64", "256"):
        dr, dp, _, _ = d[("direct", kind, c)]
        ar, ap, ac, ae = d[("agifarm", kind, c)]
        nr, np_, nc, ne = d[("nginx", kind, c)]
        name = "non-streaming" if kind == "plain" else "streaming(SSE)"
        print(f"{name:<16}{c:>6}{dr:>12.0f}{ar:>13.0f}{nr:>11.0f}{ar/nr:>10.2f}{dp:>9.2f}ms{ap-dp:>11.2f}ms{np_-dp:>9.2f}ms"
              f"{ac:>14.1f}us{nc:>12.1f}us"
              + ("" if ae == "none" and ne == "none" else f"   errors: agifarm[{ae}] nginx[{ne}]"))
print()
print("paced: a fixed offered load (see PACED_RPS above); +p99 here is the latency the proxy itself adds")
print(f"{'workload':<16}{'conns':>6}{'direct rps':>12}{'agifarm rps':>13}{'nginx rps':>11}"
      f"{'p99 direct':>11}{'+p99 agifarm':>13}{'+p99 nginx':>11}")
for kind in ("plain", "stream"):
    for c in ("64", "256"):
        k = kind + "-paced"
        dr, dp, _, _ = d[("direct", k, c)]
        ar, ap, _, ae = d[("agifarm", k, c)]
        nr, np_, _, ne = d[("nginx", k, c)]
        name = "non-streaming" if kind == "plain" else "streaming(SSE)"
        print(f"{name:<16}{c:>6}{dr:>12.0f}{ar:>13.0f}{nr:>11.0f}{dp:>9.2f}ms{ap-dp:>11.2f}ms{np_-dp:>9.2f}ms"
              + ("" if ae == "none" and ne == "none" else f"   errors: agifarm[{ae}] nginx[{ne}]"))
PY
