#include "emit/script.hpp"

#include <fmt/format.h>

#include "emit/internal.hpp"

namespace agifarm::emit::detail {

std::string shell_ident(const std::string& name) {
  std::string s = slug(name);
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

std::string process_script(const script_spec& spec) {
  std::string s = "#!/usr/bin/env bash\n" + spec.title;
  s += fmt::format(
      "#   ./{0} start    start every process of this node, dependencies first; waits until each is ready\n"
      "#   ./{0} stop     stop them: SIGTERM to each process group, SIGKILL after STOP_TIMEOUT seconds\n"
      "#   ./{0} status   show each process's state\n",
      spec.usage_name);
  s += spec.header + "set -euo pipefail\n\n";
  for (const auto& line : spec.settings) s += line + "\n";
  s += "START_TIMEOUT=\"${START_TIMEOUT:-600}\"\n"
       "STOP_TIMEOUT=\"${STOP_TIMEOUT:-30}\"\n"
       "SELF=\"$(cd \"$(dirname \"${BASH_SOURCE[0]}\")\" && pwd)/$(basename \"${BASH_SOURCE[0]}\")\"\n";
  std::vector<std::string> names;
  for (const auto& p : spec.processes) names.push_back(p.name);
  s += fmt::format("PROCESSES=({})  # start order\n\n", sh_join(names));

  for (const auto& p : spec.processes)
    s += p.comment +
         fmt::format("run_{}() {{\n{}  exec {}\n}}\n\n", shell_ident(p.name), p.prelude, p.command);

  std::string comm_test;
  for (const auto& c : spec.comms) comm_test += fmt::format("\"$comm\" == {} || ", sh_quote(c));
  comm_test = spec.comms.empty()
                  ? std::string(": \"$comm\" \"$cmd\"  # any process")
                  : "[[ " + comm_test + "(\"$comm\" == bash && \"$cmd\" == *\" __run \"*) ]] || return 1";
  s += fmt::format(R"SH(log() {{ printf '%s\n' "$*" >&2; }}

# The pid of a running process, if its pid file names a live process of ours (not a reused pid).
pid_of() {{
  local f="$STATE_DIR/$1.pid" pid comm cmd
  [[ -f "$f" ]] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  # Between the pid file and exec the process is still this script's bash, running "__run NAME".
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  {}
  printf '%s\n' "$pid"
}}

tcp_open() {{ (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }}
http_ok() {{ curl -fsS -o /dev/null --max-time 5 "http://$1:$2$3" 2>/dev/null; }}

wait_tcp() {{  # WHAT NODE HOST PORT
  local deadline=$((SECONDS + START_TIMEOUT))
  log "waiting for $1 on $3:$4 (start it on node $2)"
  until tcp_open "$3" "$4"; do
    if ((SECONDS >= deadline)); then log "error: $1 on $3:$4 is not reachable after ${{START_TIMEOUT}}s"; return 1; fi
    sleep 0.5
  done
}}

{}# ready NAME: does the process answer?
ready() {{
  case "$1" in
)SH",
                   comm_test, spec.functions);
  for (const auto& p : spec.processes) s += fmt::format("    {}) {} ;;\n", sh_quote(p.name), p.ready);
  s += "    *) return 1 ;;\n  esac\n}\n\n";
  s += "# wait_remote NAME: what this process needs on other nodes is reachable.\nwait_remote() {\n  case "
       "\"$1\" in\n";
  for (const auto& p : spec.processes)
    if (!p.wait_remote.empty()) s += fmt::format("    {}) {} ;;\n", sh_quote(p.name), p.wait_remote);
  s += "    *) : ;;\n  esac\n}\n\n";
  s += R"SH(start_one() {
  local name=$1 pid deadline
  if pid=$(pid_of "$name"); then log "$name: already running (pid $pid)"; return 0; fi
  wait_remote "$name" || return 1
  rm -f "$STATE_DIR/$name.pid"
  setsid bash "$SELF" __run "$name" >>"$STATE_DIR/$name.log" 2>&1 </dev/null &
  deadline=$((SECONDS + START_TIMEOUT))
  until [[ -f "$STATE_DIR/$name.pid" ]] && ready "$name"; do
    if [[ -f "$STATE_DIR/$name.pid" ]] && ! pid_of "$name" >/dev/null; then
      log "error: $name exited while starting; last lines of $STATE_DIR/$name.log:"
      tail -n 20 "$STATE_DIR/$name.log" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "error: $name is not ready after ${START_TIMEOUT}s; see $STATE_DIR/$name.log"
      return 1
    fi
    sleep 0.2
  done
  log "$name: ready (pid $(<"$STATE_DIR/$name.pid"))"
}

stop_one() {
  local name=$1 pid deadline
  if ! pid=$(pid_of "$name"); then rm -f "$STATE_DIR/$name.pid"; return 0; fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
  done
  rm -f "$STATE_DIR/$name.pid"
  log "$name: stopped"
}

stop_all() {
  local i
  for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do stop_one "${PROCESSES[i]}"; done
)SH";
  s += spec.after_stop;
  s += R"SH(}

case "${1:-}" in
  start)
    mkdir -p "$STATE_DIR"
)SH";
  s += spec.before_start;
  s += R"SH(    for name in "${PROCESSES[@]}"; do
      if ! start_one "$name"; then
        log "stopping what was started"
        stop_all
        exit 1
      fi
    done
    ;;
  stop)
    stop_all
    ;;
  status)
    for name in "${PROCESSES[@]}"; do
      if pid=$(pid_of "$name"); then
        if ready "$name"; then state=ready; else state=starting; fi
        printf '%-32s %-9s pid %s\n' "$name" "$state" "$pid"
      else
        printf '%-32s stopped\n' "$name"
      fi
    done
    ;;
  __run)
    printf '%s\n' "$$" >"$STATE_DIR/$2.pid"
    case "$2" in
)SH";
  for (const auto& p : spec.processes)
    s += fmt::format("      {}) run_{} ;;\n", sh_quote(p.name), shell_ident(p.name));
  s += R"SH(      *) log "unknown process '$2'"; exit 2 ;;
    esac
    ;;
  *)
    log "usage: $0 start|stop|status"
    exit 2
    ;;
esac
)SH";
  return s;
}

}  // namespace agifarm::emit::detail
