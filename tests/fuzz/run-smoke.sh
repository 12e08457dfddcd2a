#!/usr/bin/env bash
# Fuzz smoke test: builds the libFuzzer targets (tests/fuzz, clang-14) in build-fuzz/ and runs
# each one for SECONDS (default 60) on a copy of its seed corpus, one after another.
#
#   tests/fuzz/run-smoke.sh [SECONDS]     (default: $KMS_FUZZ_SECONDS, else 60)
#
# Exits 0 when every target ran clean, 1 when one crashed (the crash input and the command
# that reproduces it are printed), 2 on a build failure or when clang-14 is missing.
# The main test build registers this script as the ctest entry Fuzz.Smoke (label fuzz) and
# builds the targets itself: KMS_FUZZ_NO_BUILD=1 then runs what KMS_FUZZ_BUILD_DIR holds.
# Set KMS_BUILD_LOCK=/path/to/lockfile to take that flock(1) lock around the build step.
set -euo pipefail

duration=${1:-${KMS_FUZZ_SECONDS:-60}}
if ! [[ $duration =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
if [[ ${KMS_FUZZ_NO_BUILD:-} != 1 ]] && ! command -v clang++-14 >/dev/null 2>&1; then
  echo "fuzz: clang-14 is not installed (apt-get install clang-14 libfuzzer-14-dev libclang-rt-14-dev)" >&2
  exit 2
fi

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$fuzz_dir/../.." && pwd)
build=${KMS_FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=(fuzz_tnauthlist fuzz_jws fuzz_acme_objects fuzz_config fuzz_pkcs11_uri fuzz_pem_chain fuzz_signing_request)

lock=()
if [[ -n ${KMS_BUILD_LOCK:-} ]]; then
  lock=(flock "$KMS_BUILD_LOCK")
fi
if [[ ${KMS_FUZZ_NO_BUILD:-} == 1 ]]; then
  for t in "${targets[@]}"; do
    if [[ ! -x $build/$t ]]; then
      echo "fuzz: $build/$t is not built (the main build's kms_fuzz_targets builds it)" >&2
      exit 2
    fi
  done
else
  echo "fuzz: building ${targets[*]} in $build"
  mkdir -p "$build"
  if ! CC=clang-14 CXX=clang++-14 cmake -S "$fuzz_dir" -B "$build" >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "fuzz: configure failed" >&2
    exit 2
  fi
  if ! "${lock[@]}" cmake --build "$build" -j2; then
    echo "fuzz: build failed" >&2
    exit 2
  fi
fi

# Findings abort; leaks are reported. Caller's ASAN/UBSAN options win.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

work=$(mktemp -d "${TMPDIR:-/tmp}/kms-fuzz.XXXXXX")
failed=0
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  mkdir -p "$corpus" "$work/artifacts"
  # A copy: new inputs the fuzzer finds must not land in the repository.
  cp -R "$fuzz_dir/corpus/$t/." "$corpus/"
  log="$work/$t.log"
  rc=0
  "$build/$t" -max_total_time="$duration" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$t-" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  if ((rc == 0)); then
    echo "fuzz: $t: ${execs:-?} executions in ${duration}s, ok"
    continue
  fi
  failed=1
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
  echo "fuzz: $t: ${execs:-?} executions, FAILED (exit $rc)"
  echo "----- $t log (last 60 lines; full log: $log)"
  tail -n 60 "$log"
  echo "-----"
  if [[ -n $artifact ]]; then
    echo "fuzz: $t: crash input: $artifact"
    echo "fuzz: $t: reproduce:   $build/$t $artifact"
  fi
done

if ((failed)); then
  echo "fuzz: FAILED; inputs and logs kept in $work"
  exit 1
fi
rm -rf "$work"
echo "fuzz: all ${#targets[@]} targets ran ${duration}s each without a finding"
