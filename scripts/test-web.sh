#!/usr/bin/env bash
# Builds the WebAssembly variants and the JS package, then runs the browser
# tests in headless Chromium (Debian's /usr/bin/chromium via playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-web.sh
scripts/build-wasm.sh
node --test --test-concurrency=1 tests/web/
