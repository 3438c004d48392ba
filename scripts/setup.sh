#!/usr/bin/env bash
# Installs everything agifarm needs on a fresh Debian 12 machine and builds llama.cpp into a cache
# outside the repository. Idempotent: a second run reuses what is there.
#   scripts/setup.sh            apt packages + npm test deps + llama.cpp
#   AGIFARM_SKIP_APT=1          skip apt (already installed)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

apt_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl
  clang-14 libclang-rt-14-dev llvm-14 clang-format-14 clang-tidy-14
  libboost1.81-dev libboost-json1.81-dev libboost-system1.81-dev
  libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev sqlite3
  nginx-light wrk prometheus docker-compose shellcheck systemd
  procps psmisc iproute2 lsof xxd valgrind openssh-server openssh-client
  chromium
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

# Pinned npm tarballs, integrity-checked against the registry's dist.integrity (npm view <pkg>@<v> dist.integrity):
#   uplot: the dashboard's charts, embedded into the agifarm binary at build time (src/web_assets)
#   playwright-core: drives Debian's chromium in the dashboard browser test
npm_dir="${AGIFARM_CACHE:-$HOME/.cache/agifarm}/npm"
npm_pinned=(
  "uplot 1.6.32 sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
  "playwright-core 1.65.2 sha512-aHu9F46Mx5ha9iiB+VLZMUUtex3PBw4am9MHptc0IXaJhz++6YXsH96eEyThwCwMkIUiB8TdZcwXqnb3xKDzmA=="
)
mkdir -p "$npm_dir"
for entry in "${npm_pinned[@]}"; do
  read -r name version integrity <<<"$entry"
  tgz="$npm_dir/$name-$version.tgz"
  if [[ ! -f "$tgz" ]]; then
    echo "[setup] npm pack $name@$version"
    (cd "$npm_dir" && npm pack --silent "$name@$version" >/dev/null)
  fi
  actual="sha512-$(sha512sum "$tgz" | cut -d' ' -f1 | xxd -r -p | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "[setup] integrity mismatch for $tgz: expected $integrity got $actual" >&2
    rm -f "$tgz"; exit 1
  fi
  # unpacked beside the tarball: $npm_dir/<name>-<version>/package/...
  if [[ ! -d "$npm_dir/$name-$version/package" ]]; then
    rm -rf "$npm_dir/$name-$version.tmp" && mkdir -p "$npm_dir/$name-$version.tmp"
    tar -xzf "$tgz" -C "$npm_dir/$name-$version.tmp"
    mv "$npm_dir/$name-$version.tmp" "$npm_dir/$name-$version"
  fi
done
echo "[setup] npm pinned packages ok in $npm_dir"

"$here/scripts/build-llama.sh"
