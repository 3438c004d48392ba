#!/usr/bin/env bash
# Installs everything agifarm needs on a fresh Debian 12 machine and builds llama.cpp into a cache
# outside the repository. Idempotent: a second run reuses what is there.
#   scripts/setup.sh            apt packages + npm test deps + llama.cpp
#   AGIFARM_SKIP_APT=1          skip apt (already installed)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

apt_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl
  clang-14 libclang-rt-14-dev llvm-14
  libboost1.81-dev libboost-json1.81-dev libboost-system1.81-dev
  libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev sqlite3
  nginx-light wrk prometheus docker-compose shellcheck systemd
  procps psmisc iproute2 lsof xxd valgrind openssh-server openssh-client
)

if [[ "${AGIFARM_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Node.js + npm: the machine's own (often nodesource's, which bundles npm) wins; Debian's otherwise.
  command -v npm >/dev/null || missing+=(nodejs npm)
  if ((${#missing[@]})); then
    echo "[setup] apt-get install ${missing[*]}"
    sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "[setup] apt packages: all present"
  fi
fi

# npm packages for the integration tests (the official OpenAI client); kept out of the repo.
node_dir="${AGIFARM_CACHE:-$HOME/.cache/agifarm}/node"
if [[ ! -d "$node_dir/node_modules/openai" ]]; then
  mkdir -p "$node_dir"
  (cd "$node_dir" && { [[ -f package.json ]] || echo '{"name":"agifarm-test-deps","private":true}' > package.json; } \
     && npm install --no-audit --no-fund --silent openai@4 >/dev/null)
  echo "[setup] npm openai client installed in $node_dir"
fi

"$here/scripts/build-llama.sh"
