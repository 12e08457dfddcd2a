#!/usr/bin/env bash
# The test command: installs the Debian packages, builds one configuration with
# ASan+UBSan and -Werror, then the Release tree (the benchmarks, run by hand: see
# tests/bench/README.md), the .deb packages from it (the package tests read them) and the
# Debian root the `system` test boots, runs the whole ctest suite (the libFuzzer smoke run is its entry Fuzz.Smoke) and prints how many tests
# skipped themselves, and which.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh

jobs=$(nproc)
build=${KMS_TEST_BUILD_DIR:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DKMS_SANITIZE=ON -DKMS_WERROR=ON -DKMS_FAILPOINTS=ON
cmake --build "$build" -j"$jobs"

bench=${KMS_BENCH_BUILD_DIR:-build-bench}
cmake -S . -B "$bench" -DCMAKE_BUILD_TYPE=Release -DKMS_BUILD_TESTS=OFF -DKMS_BUILD_BENCH=ON -DKMS_WERROR=ON \
  -DKMS_SYSTEMD_UNIT_DIR=/lib/systemd/system
cmake --build "$bench" -j"$jobs"
KMS_BENCH_BUILD_DIR="$bench" bash deploy/build-packages.sh
export KMS_PACKAGE_DIR="$PWD/$bench/packages"
# The Debian 12 root the `system` test boots (mmdebstrap from the host's apt sources, cached
# under /var/cache/kmsd-nspawn for 7 days): built here, so the test's TIMEOUT covers the test.
bash tests/system/nspawn/make-root.sh --cache-only

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
log="$build/ctest.log"
rc=0
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300 2>&1 | tee "$log" || rc=$?
# A test skips only where the machine cannot have what it needs (IPv6 loopback, root for a
# tmpfs mount); each skip is counted here so none goes unseen.
skipped=$(sed -n '/The following tests did not run:/,/^$/p' "$log" | grep '(Skipped)' || true)
echo "tests skipped: $(grep -c . <<<"$skipped" || true)"
if [[ -n $skipped ]]; then
  echo "$skipped"
fi
if ((rc != 0)); then
  exit "$rc"
fi
