#!/usr/bin/env bash
# The lint stage of scripts/test.sh: every C++ file under src/, tests/, bench/ and fuzz/ is as
# .clang-format writes it, and src/ is clean under .clang-tidy (its checks are errors).
#   scripts/lint.sh [BUILD_DIR]   BUILD_DIR holds compile_commands.json (default build/release)
#   scripts/lint.sh --fix         rewrites the files with clang-format instead of checking them
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t cxx < <(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 'bench/*.hpp' \
  'fuzz/*.cpp' 'fuzz/*.hpp')
if [[ "${1:-}" == --fix ]]; then
  clang-format-14 -i "${cxx[@]}"
  exit 0
fi

unformatted=()
for f in "${cxx[@]}"; do
  clang-format-14 --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if ((${#unformatted[@]})); then
  echo "[lint] not as .clang-format writes them (run scripts/lint.sh --fix):" >&2
  printf '  %s\n' "${unformatted[@]}" >&2
  exit 1
fi
echo "[lint] clang-format: ${#cxx[@]} files clean"

build_dir="${1:-build/release}"
[[ -f "$build_dir/compile_commands.json" ]] || { echo "[lint] no $build_dir/compile_commands.json: build first" >&2; exit 1; }
mapfile -t sources < <(git ls-files 'src/*.cpp')
log=$(mktemp)
# One clang-tidy per file, as many at once as there are cores; any finding fails the stage.
if ! printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy-14 -p "$build_dir" --quiet >"$log" 2>&1; then
  grep -E 'warning:|error:' "$log" | sort -u >&2 || cat "$log" >&2
  rm -f "$log"
  echo "[lint] clang-tidy found the problems above" >&2
  exit 1
fi
rm -f "$log"
echo "[lint] clang-tidy: ${#sources[@]} files clean"
