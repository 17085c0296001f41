#!/usr/bin/env bash
# CMAKE_<LANG>_LINKER_LAUNCHER for TABFIT_WASM_RELAXED builds (set by scripts/build-wasm.sh):
# runs the em++ link command it is given, then rewrites the linked .wasm's calls of
# env.tabfit_relaxed_dot_add into i32x4.relaxed_dot_i8x16_i7x16_add_s
# (scripts/wasm-relaxed-patch.mjs) and insists that the result validates. On failure
# the outputs are removed, so the next build links again instead of keeping an
# unpatched module.
set -euo pipefail
"$@"
out=""
prev=""
for a in "$@"; do
  [[ "$prev" == "-o" ]] && out="$a"
  prev="$a"
done
[[ -n "$out" ]] || { echo "wasm-relaxed-link: no -o in the link command" >&2; exit 1; }
wasm="${out%.*}.wasm"
[[ -f "$wasm" ]] || { echo "wasm-relaxed-link: $wasm not found after linking $out" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! /usr/bin/node --experimental-wasm-relaxed-simd "$here/wasm-relaxed-patch.mjs" "$wasm" --glue "$out" --require-valid >"$(dirname "$wasm")/relaxed-patch-$(basename "$wasm").json"; then
  rm -f "$out" "$wasm"
  exit 1
fi
