#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for tabfit and builds it (idempotent).
#   scripts/setup.sh           native build (build/) + web toolchain and wasm build
#   TABFIT_NO_WEB=1 scripts/setup.sh   native only
set -euo pipefail
cd "$(dirname "$0")/.."

need=(build-essential cmake ninja-build g++ pkg-config googletest libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libssl-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"

if [ -z "${TABFIT_NO_WEB:-}" ] && [ -x scripts/setup-web.sh ]; then
  scripts/setup-web.sh
fi
echo "setup: done (native binary: build/tabfit)"
