#!/usr/bin/env bash
# Builds the kmsd and kms-lab .deb packages from the Release tree (KMS_BENCH_BUILD_DIR,
# build-bench by default; built first if needed) and puts them in that tree's packages/.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${KMS_BENCH_BUILD_DIR:-build-bench}
out="$bench/packages"
rm -rf "$out" debian/tmp debian/kmsd debian/kms-lab debian/.debhelper debian/files debian/*.substvars \
  debian/*.debhelper debian/*.debhelper.log debian/debhelper-build-stamp
BUILD="$bench" dpkg-buildpackage -b -uc -us -nc --no-sign >"$bench/packages.log" 2>&1 || {
  tail -40 "$bench/packages.log"
  exit 1
}
mkdir -p "$out"
# dpkg-buildpackage writes beside the source tree; debian/files lists what it wrote.
while read -r file _; do
  mv "../$file" "$out/"
done <debian/files
rm -f ../shaken-kms_*.buildinfo ../shaken-kms_*.changes
rm -rf debian/tmp debian/kmsd debian/kms-lab debian/kmsd-dbgsym debian/kms-lab-dbgsym debian/.debhelper debian/files \
  debian/*.substvars debian/*.debhelper debian/*.debhelper.log debian/debhelper-build-stamp
ls "$out"
