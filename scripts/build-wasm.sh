#!/usr/bin/env bash
# Builds tabfit for the browser from the same C++ sources as the native build:
#   web/dist/wasm/tabfit-mt.{mjs,wasm,worker.js}  SIMD128 + pthreads (needs crossOriginIsolated)
#   web/dist/wasm/tabfit-st.{mjs,wasm}            SIMD128, no threads (baseline)
#   web/dist/wasm/tabfit-scalar.{mjs,wasm}        no SIMD, no threads (browsers without wasm SIMD)
#   web/dist/wasm/tabfit-{mt,st}-relaxed.*        as mt/st, plus relaxed SIMD's 8-bit dot in the Q4_0/TF_Q4
#                                                 kernels (docs/wasm-relaxed-simd.md; the loader picks them
#                                                 where WebAssembly.validate accepts a relaxed-dot module)
# then compiles the TypeScript package (web/src -> web/dist).
# Usage: scripts/build-wasm.sh [mt|st|scalar|mt-relaxed|st-relaxed|ts ...]   (default: all). Needs scripts/setup-web.sh first.
# Env: TABFIT_SOURCE (default: this checkout), TABFIT_WASM_BUILD_PREFIX (default: <root>/build-wasm),
#      TABFIT_WASM_SIMD=0 builds every variant without SIMD128,
#      TABFIT_WASM_NODE_TESTS=1 also builds c_api_test for Node in each variant and runs it (ctest),
#      TABFIT_WASM_SELFCHECK=0 skips quant_selfcheck and kv_selfcheck (each variant's kernels vs the scalar oracle, under Node;
#      relaxed variants in headless Chromium, because Node 20 computes the relaxed dot wrongly).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${TABFIT_SOURCE:-$ROOT}"
PREFIX="${TABFIT_WASM_BUILD_PREFIX:-$ROOT/build-wasm}"
OUT="$ROOT/web/dist/wasm"
export NODE_PATH=/usr/share/nodejs   # em++ needs Debian's node-acorn (NodeSource's node does not look there)
JOBS="${JOBS:-2}"

targets=("$@")
((${#targets[@]})) || targets=(mt st scalar mt-relaxed st-relaxed ts)
mkdir -p "$OUT"

# nlohmann_json is header-only, but Emscripten's toolchain confines find_package
# to its sysroot. Give CMake a package config whose include folder holds only
# a link to /usr/include/nlohmann (never all of /usr/include: glibc headers
# must not shadow the wasm sysroot).
json_pkg() {
  local d="$PREFIX-deps"
  mkdir -p "$d/include" "$d/nlohmann_json"
  [[ -e "$d/include/nlohmann" ]] || ln -s /usr/include/nlohmann "$d/include/nlohmann"
  cat > "$d/nlohmann_json/nlohmann_jsonConfig.cmake" <<CFG
if(NOT TARGET nlohmann_json::nlohmann_json)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "$d/include")
endif()
CFG
  cat > "$d/nlohmann_json/nlohmann_jsonConfigVersion.cmake" <<CFG
set(PACKAGE_VERSION 3.11.2)
set(PACKAGE_VERSION_COMPATIBLE TRUE)
CFG
  echo "$d/nlohmann_json"
}

build_variant() {
  local v="$1" flags="-fwasm-exceptions" simd=OFF relaxed=OFF
  [[ "${TABFIT_WASM_SIMD:-1}" == 1 && "$v" != scalar ]] && flags+=" -msimd128" && simd=ON
  [[ "$v" == mt* ]] && flags+=" -pthread"
  if [[ "$v" == *-relaxed ]]; then
    [[ "$simd" == ON ]] || { echo "build-wasm: $v needs SIMD (TABFIT_WASM_SIMD=1)" >&2; exit 2; }
    relaxed=ON
  fi
  local dir="$PREFIX-$v"
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  emcmake cmake -S "$SRC" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTABFIT_BUILD_TESTS=OFF -DTABFIT_BUILD_BENCH=OFF -DTABFIT_BUILD_CLI=OFF \
    -DTABFIT_WASM_VARIANT="$v" -DTABFIT_WASM_SIMD="$simd" -DTABFIT_WASM_RELAXED="$relaxed" -Dnlohmann_json_DIR="$(json_pkg)" -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_CROSSCOMPILING_EMULATOR="/usr/bin/node;--no-experimental-fetch" "${launcher[@]}" >/dev/null
  cmake --build "$dir" --target tabfit_wasm -j"$JOBS"
  if [[ "${TABFIT_WASM_SELFCHECK:-1}" == 1 ]]; then
    # Every wasm kernel of the kernel list against the scalar oracle, under Node (seconds).
    cmake --build "$dir" --target quant_selfcheck kv_selfcheck -j"$JOBS"
    if [[ "$relaxed" == ON ]]; then
      /usr/bin/node "$ROOT/scripts/wasm-run-in-chromium.mjs" "$dir/src/quant/quant_selfcheck.js"
    else
      /usr/bin/node --no-experimental-fetch "$dir/src/quant/quant_selfcheck.js"
      # The low-bit KV cache's SIMD128 kernels against their scalar oracle.
      /usr/bin/node --no-experimental-fetch "$dir/src/kv/kv_selfcheck.js"
    fi
  fi
  # Not for relaxed variants: c_api_test_node runs under Node 20, which computes the relaxed dot wrongly.
  if [[ "${TABFIT_WASM_NODE_TESTS:-0}" == 1 && "$relaxed" == OFF ]]; then
    cmake "$dir" -DTABFIT_WASM_NODE_TESTS=ON >/dev/null
    cmake --build "$dir" --target c_api_test_node -j"$JOBS"
    ctest --test-dir "$dir/web/wasm" -R c_api_test_node --output-on-failure --no-tests=error
  fi
  local f
  for f in "$dir"/web/wasm/tabfit-"$v".*; do cp "$f" "$OUT/"; done
  echo "build-wasm: $v -> $(ls "$OUT"/tabfit-"$v".* | xargs -n1 basename | tr '\n' ' ')"
}

for t in "${targets[@]}"; do
  case "$t" in
    mt|st|scalar|mt-relaxed|st-relaxed) build_variant "$t" ;;
    ts) (cd "$ROOT/web" && [[ -d node_modules ]] || { echo "run scripts/setup-web.sh first" >&2; exit 1; }
         cd "$ROOT/web" && npx --no-install tsc -p tsconfig.json &&
         echo "build-wasm: ts -> web/dist/*.js") ;;
    *) echo "unknown target '$t' (mt, st, scalar, mt-relaxed, st-relaxed, ts)" >&2; exit 2 ;;
  esac
done
