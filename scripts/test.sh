#!/usr/bin/env bash
# The README's test command: installs everything (scripts/setup.sh), builds, and runs every test:
#   1. release build (g++ 12): unit + integration tests (real llama-server processes, loopback only)
#   2. lint: clang-format over the tree, clang-tidy over src/ (scripts/lint.sh, uses the release build's
#      compile_commands.json)
#   3. ASan+UBSan build (g++ 12): unit tests
#   4. fuzz build (clang 14, libFuzzer + ASan/UBSan): each fuzz target for AGIFARM_FUZZ_SECONDS (60)
# Exits non-zero on the first failing stage. AGIFARM_TEST_STAGES="release lint asan fuzz" picks stages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stages="${AGIFARM_TEST_STAGES:-release lint asan fuzz}"
start=$SECONDS
stamp() { echo "[test] $* (+$((SECONDS - start))s)"; }

bash scripts/setup.sh
jobs=$(nproc)

for stage in $stages; do
  if [[ $stage == lint ]]; then
    stamp "lint"
    cmake --preset release >/dev/null
    bash scripts/lint.sh build/release
    continue
  fi
  stamp "configure + build: $stage"
  cmake --preset "$stage" >/dev/null
  cmake --build --preset "$stage" -j "$jobs"
  stamp "ctest: $stage"
  case "$stage" in
    release) ctest --preset release -j "$jobs" --timeout 600 ;;
    asan) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --preset asan -j "$jobs" ;;
    fuzz) ctest --preset fuzz -j "$jobs" ;;
  esac
done
stamp "all stages passed: $stages"
