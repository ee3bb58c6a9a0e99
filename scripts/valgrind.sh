#!/usr/bin/env bash
# Integration tests under valgrind memcheck (docs/RELIABILITY.md, "Valgrind"):
# every storepulse process the harness starts (run, broker, gen, alerts,
# import-orders, check-config) runs under valgrind with the suppressions of
# tests/valgrind.supp; a test class fails if any of its valgrind logs reports
# an error or a definite or indirect leak, and prints that log.
#
#   bash scripts/valgrind.sh [BUILD_DIR]     # default build (RelWithDebInfo)
#   SP_VG_TESTS='funnel_handmade|secrets' bash scripts/valgrind.sh   # other tests
#   SP_VG_TESTS=all bash scripts/valgrind.sh   # every integration test CI runs (~15 min)
#   SP_TIMEOUT_SCALE=8 bash scripts/valgrind.sh                      # slower machine
#
# Builds nothing: run it after `cmake --build BUILD_DIR`. Needs valgrind
# (deploy/install-deps.sh). One test at a time (-j1): under valgrind each
# storepulse process keeps a core busy.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

# The tests that pass under valgrind within their timeouts (5x the normal
# ones, SP_TIMEOUT_SCALE); the list and each one's time: docs/RELIABILITY.md.
tests=${SP_VG_TESTS:-funnel_handmade|abandonment_handmade|delivery_handmade|retention_handmade|support_handmade|deadletter|import_orders|secrets|state_expiry|alerts_cli}

[ "$tests" = all ] && tests='.*'

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not installed" >&2; exit 2; }
[ -x "$build/storepulse" ] || { echo "valgrind.sh: no $build/storepulse (build first)" >&2; exit 2; }
cd "$build"
SP_VALGRIND=1 ctest --output-on-failure -j1 -L integration -R "^it_test_($tests)\$"
