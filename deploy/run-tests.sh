#!/usr/bin/env bash
# The test command: installs the Debian packages, builds one configuration with
# ASan+UBSan and -Werror, runs the whole ctest suite and a libFuzzer smoke run. Benchmarks are compiled in
# their own Release build (run them by hand: see tests/bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh

jobs=$(nproc)
build=${KMS_TEST_BUILD_DIR:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DKMS_SANITIZE=ON -DKMS_WERROR=ON -DKMS_FAILPOINTS=ON
cmake --build "$build" -j"$jobs"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300

# Every parser of outside input, under libFuzzer with ASan+UBSan, for a short smoke run.
ASAN_OPTIONS=detect_leaks=1 bash tests/fuzz/run-smoke.sh "${KMS_FUZZ_SECONDS:-60}"

bench=${KMS_BENCH_BUILD_DIR:-build-bench}
cmake -S . -B "$bench" -DCMAKE_BUILD_TYPE=Release -DKMS_BUILD_TESTS=OFF -DKMS_BUILD_BENCH=ON -DKMS_WERROR=ON
cmake --build "$bench" -j"$jobs"
