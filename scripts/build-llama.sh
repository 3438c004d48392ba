#!/usr/bin/env bash
# Fetches llama.cpp's source from the npm registry (inside node-llama-cpp), verifies the package's
# integrity hash, and builds the CPU tools agifarm drives into ~/.cache/agifarm/llama.cpp-<version>.
# Reuses an existing build. Prints the bin directory on the last line.
set -euo pipefail
pkg_version="3.22.1"
# sha512 integrity of node-llama-cpp-3.22.1.tgz as published in the registry (npm view ... dist.integrity)
pkg_integrity="sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=="
cache="${AGIFARM_CACHE:-$HOME/.cache/agifarm}"
prefix="$cache/llama.cpp-node-llama-cpp-$pkg_version"
bin="$prefix/build/bin"
targets=(llama-server ggml-rpc-server llama-bench llama-fit-params llama-quantize)

have_all() { for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || return 1; done; [[ -f "$prefix/build/lib/libggml-base.so" || -f "$prefix/build/bin/libggml-base.so" ]]; }
if have_all; then echo "[llama.cpp] cached build at $bin"; echo "$bin"; exit 0; fi

mkdir -p "$prefix"
tgz="$prefix/node-llama-cpp-$pkg_version.tgz"
if [[ ! -f "$tgz" ]]; then
  echo "[llama.cpp] npm pack node-llama-cpp@$pkg_version"
  (cd "$prefix" && npm pack --silent "node-llama-cpp@$pkg_version" >/dev/null)
fi
actual="sha512-$(sha512sum "$tgz" | cut -d' ' -f1 | xxd -r -p | base64 -w0)"
if [[ "$actual" != "$pkg_integrity" ]]; then
  echo "[llama.cpp] integrity mismatch for $tgz: expected $pkg_integrity got $actual" >&2
  rm -f "$tgz"; exit 1
fi
echo "[llama.cpp] integrity ok ($pkg_integrity)"
if [[ ! -d "$prefix/src/.git" ]]; then
  rm -rf "$prefix/pkg" "$prefix/src"; mkdir -p "$prefix/pkg"
  tar -xzf "$tgz" -C "$prefix/pkg" package/llama/gitRelease.bundle
  git clone -q "$prefix/pkg/package/llama/gitRelease.bundle" "$prefix/src"
  rm -rf "$prefix/pkg"
fi
echo "[llama.cpp] building ${targets[*]} (takes ~5-10 min on 2 cores)"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$prefix/src" -B "$prefix/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_RPC=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=ON >"$prefix/cmake.log" 2>&1 \
  || { tail -30 "$prefix/cmake.log" >&2; exit 1; }
# Full compiler output goes to build.log; the terminal gets a progress line every ~10% and errors.
cmake --build "$prefix/build" -j "$(nproc)" --target "${targets[@]}" ggml-base >"$prefix/build.log" 2>&1 &
build_pid=$!
last=""
while kill -0 "$build_pid" 2>/dev/null; do
  sleep 15
  cur=$(grep -o '^\[[0-9]*/[0-9]*\]' "$prefix/build.log" | tail -1 || true)
  [[ -n "$cur" && "$cur" != "$last" ]] && echo "[llama.cpp] building $cur" && last="$cur"
done
if ! wait "$build_pid"; then
  grep -E 'error|Error' "$prefix/build.log" | head -20 >&2
  echo "[llama.cpp] build failed; full log: $prefix/build.log" >&2
  exit 1
fi
have_all || { echo "[llama.cpp] build did not produce all targets in $bin" >&2; exit 1; }
echo "[llama.cpp] built into $bin"
echo "$bin"
