#!/bin/bash
# make-root.sh ROOT_DIR | --cache-only
# Build (or reuse from cache) a minimal Debian 12 root for booting kmsd under systemd-nspawn,
# then unpack it into ROOT_DIR (must not exist or be empty).
#
# Cache: a tarball under $KMS_NSPAWN_CACHE (default /var/cache/kmsd-nspawn) named by a hash of
# everything that decides its content: suite, variant, package list, apt sources file, the
# customize steps (this script's RECIPE_VERSION). A cold run (no cache) just builds it.
# KMS_NSPAWN_NO_CACHE=1 forces a fresh build (the cache is then refreshed).
#
# Needs: root, mmdebstrap, tar, zstd (falls back to gzip), the apt mirror of $SOURCES (cold only).
set -euo pipefail

ROOT=${1:?usage: make-root.sh ROOT_DIR | --cache-only}
SUITE=bookworm
VARIANT=minbase
# The host's own apt sources (deb822 or one-line form), so the root comes from the same mirror.
SOURCES=${KMS_NSPAWN_SOURCES:-/etc/apt/sources.list.d/debian.sources}
if [[ ! -s $SOURCES && -s /etc/apt/sources.list ]]; then
  SOURCES=/etc/apt/sources.list
fi
[[ -s $SOURCES ]] || { echo "make-root: no apt sources at $SOURCES (set KMS_NSPAWN_SOURCES)" >&2; exit 1; }
CACHE_DIR=${KMS_NSPAWN_CACHE:-/var/cache/kmsd-nspawn}
RECIPE_VERSION=2   # bump when the customize hooks below change

# kmsd's Depends + Recommends, kms-lab's Depends, and what the boot / unit need:
#  systemd, systemd-sysv: PID 1 in the container (/sbin/init)
#  procps: /bin/kill (kmsd.service ExecReload=/bin/kill -HUP $MAINPID), ps/pgrep for tests
#  ca-certificates: the system trust store kmsd's libcurl uses
#  dbus: the system bus, for systemd-timedated (kmsd's kms_clock_synchronized under its unit)
PACKAGES=(
  systemd systemd-sysv procps dbus
  softhsm2 libsofthsm2 curl ca-certificates
  libcurl4 libssl3 libsqlite3-0 libtomlplusplus3 libspdlog1.10-fmt9 libfmt9 libsystemd0
)
INCLUDE=$(IFS=,; echo "${PACKAGES[*]}")

if command -v zstd >/dev/null; then EXT=tar.zst; else EXT=tar.gz; fi
KEY=$( { echo "$SUITE $VARIANT $RECIPE_VERSION $(dpkg --print-architecture)"; echo "$INCLUDE";
         cat "$SOURCES"; } | sha256sum | cut -c1-16)
TARBALL=$CACHE_DIR/bookworm-kmsd-$KEY.$EXT

mkdir -p "$CACHE_DIR"
# The key does not cover the mirror's state: a root older than KMS_NSPAWN_MAX_AGE_DAYS (7) is
# built again, so point releases and security updates reach the test.
MAX_AGE_DAYS=${KMS_NSPAWN_MAX_AGE_DAYS:-7}
if [[ -s $TARBALL && -n $(find "$TARBALL" -mtime +"$MAX_AGE_DAYS" 2>/dev/null) ]]; then
  echo "make-root: $TARBALL is older than $MAX_AGE_DAYS days: building it again" >&2
  rm -f "$TARBALL"
fi
if [[ ${KMS_NSPAWN_NO_CACHE:-0} == 1 || ! -s $TARBALL ]]; then
  echo "make-root: building $TARBALL (cold)" >&2
  tmp=$CACHE_DIR/.building.$$.$EXT   # mmdebstrap picks tar + compressor from the name
  trap 'rm -f "$tmp"' EXIT
  start=$(date +%s)
  # --mode=root: we are root; no user namespaces needed.
  # --skip=output/mknod: tarballs hold no device nodes (nspawn makes /dev itself).
  # customize hooks:
  #  - empty machine-id: nspawn gives the container one at boot (--uuid or random)
  #  - mask units that make no sense in a throwaway container and slow/flake the boot
  #  - apt-daily timers masked: no unexpected apt runs during a test
  # One retry: a mirror caught mid-sync fails with a hash mismatch that the next try does not see.
  for attempt in 1 2; do
    if nice -n 19 ionice -c3 mmdebstrap \
      --mode=root --variant="$VARIANT" \
      --include="$INCLUDE" \
      --customize-hook='echo kmsd-test > "$1/etc/hostname"' \
      --customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
      --customize-hook='for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service getty@tty1.service console-getty.service; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done' \
      --skip=output/mknod \
      "$SUITE" "$tmp" "$SOURCES" >"$CACHE_DIR/.building.$$.log" 2>&1; then
      break
    fi
    echo "make-root: mmdebstrap failed (attempt $attempt); its last lines:" >&2
    tail -15 "$CACHE_DIR/.building.$$.log" >&2
    if ((attempt == 2)); then
      echo "make-root: cannot build the Debian 12 root from $SOURCES (see above)" >&2
      exit 1
    fi
  done
  rm -f "$CACHE_DIR/.building.$$.log"
  mv "$tmp" "$TARBALL"
  echo "make-root: built in $(( $(date +%s) - start ))s, $(du -h "$TARBALL" | cut -f1)" >&2
fi

# --cache-only: deploy/run-tests.sh builds the root before ctest, outside the test's TIMEOUT.
if [[ $ROOT == --cache-only ]]; then
  echo "make-root: $TARBALL ready" >&2
  exit 0
fi
mkdir -p "$ROOT"
if [[ -n $(ls -A "$ROOT") ]]; then echo "make-root: $ROOT not empty" >&2; exit 1; fi
start=$(date +%s%N)
if [[ $EXT == tar.zst ]]; then
  nice -n 19 tar --numeric-owner --xattrs --xattrs-include='*' -I zstd -xpf "$TARBALL" -C "$ROOT"
else
  nice -n 19 tar --numeric-owner --xattrs --xattrs-include='*' -xzpf "$TARBALL" -C "$ROOT"
fi
echo "make-root: unpacked $TARBALL into $ROOT in $(( ($(date +%s%N) - start) / 1000000 ))ms ($(du -sh "$ROOT" | cut -f1))" >&2
