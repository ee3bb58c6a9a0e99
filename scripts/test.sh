#!/usr/bin/env bash
# Install, build and run every test: the normal build (unit + integration),
# an ASan+UBSan build (unit + integration), the libFuzzer targets (clang),
# each run over its seed corpus for SP_FUZZ_SECONDS (default 15 s; longer
# runs: docs/RELIABILITY.md), and ten short integration tests again with
# every storepulse process under valgrind memcheck (normal build; the whole
# integration suite under valgrind: SP_VG_TESTS=all bash scripts/valgrind.sh).
# A test that fails is run once more before the run fails (ctest --repeat
# until-pass:2): the integration tests drive real servers on a noisy 2-core
# machine, and a timing margin missed once is told apart from a defect,
# which fails both times. ctest prints every failed attempt.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j1 --repeat until-pass:2)

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j1 --repeat until-pass:2)

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_FUZZ=ON \
  -DSP_FUZZ_SECONDS="${SP_FUZZ_SECONDS:-15}" >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzzers
(cd build-fuzz && ctest --output-on-failure -L fuzz -j1)

# valgrind: no error, no definite or indirect leak in any storepulse process
# of ten short integration tests (docs/RELIABILITY.md, "Valgrind"; ~5.5 min)
bash scripts/valgrind.sh build
