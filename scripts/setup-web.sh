#!/usr/bin/env bash
# Installs what the WebAssembly build and the browser tests need (Debian 12, Node 20).
# Idempotent: installs only what is missing. Never downloads a browser: the
# tests drive Debian's /usr/bin/chromium through playwright-core.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

missing=()
# Node.js and npm: the machine image ships Node 20; a bare Debian 12 gets Debian's nodejs/npm.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
for pkg in emscripten chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y "${missing[@]}"
fi

# em++ needs Debian's node-acorn, which NodeSource's node does not search for.
export NODE_PATH=/usr/share/nodejs
em++ --version | sed -n 1p  # sed reads it all: `head -1` closed the pipe early, em++ died of EPIPE and pipefail failed setup (seen once in 3 runs)

cd "$ROOT/web"
if [[ -f package-lock.json ]]; then
  npm ci --no-fund --no-audit
else
  npm install --no-fund --no-audit
fi
echo "setup-web: ok (run scripts/build-wasm.sh next; builds need NODE_PATH=/usr/share/nodejs, which it sets)"
