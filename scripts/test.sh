#!/usr/bin/env bash
# Sets up tabfit and runs every test: native (Release), native under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== native tests (Release)"
(cd build && ctest --output-on-failure -j2 --timeout 900)

echo "== native tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTABFIT_SANITIZE=address,undefined \
  -DTABFIT_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j2 --timeout 1800)

echo "== loader / progressive-loading tests under ThreadSanitizer"
# The loader thread, prefetch, cancel and unload: only the tests that drive them.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTABFIT_SANITIZE=thread \
  -DTABFIT_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j"$(nproc)" --target progressive_test engine_test c_api_test http_engine_test
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --output-on-failure -j2 --timeout 1800 \
    -R '^(Streaming|Progressive|Faults|Components|Speculative|CApi|HttpEngine|Engine[.](LoadsDemo|Greedy|StopStrings|BudgetTooSmall))')

if [ -z "${TABFIT_NO_WEB:-}" ] && [ -x scripts/test-web.sh ]; then
  echo "== browser tests (headless Chromium)"
  scripts/test-web.sh
fi
echo "all tests passed"
