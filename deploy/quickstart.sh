#!/usr/bin/env bash
# The quickstart: installs the Debian packages, builds and installs kmsd, kmsctl and
# kms-lab into ./.kms-quickstart, starts kms-lab (a local STI-PA + STI-CA on 127.0.0.1)
# in the background, and starts the kmsd daemon (in the background too) on the configuration
# kms-lab wrote: a SoftHSM2 token, an SPC token from the STI-PA, ACME with tkauth-01, a
# checked SHAKEN certificate published to a local STI-CR web root, renewed on its own. It
# waits until `kmsctl status` shows the certificate active and ends with it. Re-running it
# reuses the lab's PKI, port, token and state. Arguments go to kms-lab (for example
# `--cert-lifetime 120` to watch renewals). Both logs start afresh at each run (kmsd's events
# stay in its state DB: `kmsctl events`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.kms-quickstart

bash deploy/install-deps.sh

cmake -S . -B build-quickstart -DCMAKE_BUILD_TYPE=Release -DKMS_BUILD_TESTS=OFF >/dev/null
cmake --build build-quickstart -j"$(nproc)"
cmake --install build-quickstart --prefix "$root" >/dev/null

# A kmsd and kms-lab from an earlier run are stopped first (by their PIDs).
for p in kmsd kms-lab; do
  if [ -f "$root/$p.pid" ] && kill -0 "$(cat "$root/$p.pid")" 2>/dev/null; then
    kill "$(cat "$root/$p.pid")"
    while kill -0 "$(cat "$root/$p.pid")" 2>/dev/null; do sleep 0.1; done
  fi
done
mkdir -p "$root/lab"
"$root/bin/kms-lab" --dir "$root/lab" "$@" >"$root/kms-lab.log" 2>&1 &
echo $! >"$root/kms-lab.pid"
for _ in $(seq 100); do
  grep -q 'kms-lab listening on' "$root/kms-lab.log" && break
  kill -0 "$(cat "$root/kms-lab.pid")" 2>/dev/null || { cat "$root/kms-lab.log"; exit 1; }
  sleep 0.1
done
grep 'kms-lab listening on' "$root/kms-lab.log"

config=$root/lab/kmsd.toml
echo "== kmsd (daemon, log in $root/kmsd.log)"
"$root/bin/kmsd" --config "$config" >"$root/kmsd.log" 2>&1 &
echo $! >"$root/kmsd.pid"
active=
for _ in $(seq 600); do
  kill -0 "$(cat "$root/kmsd.pid")" 2>/dev/null || { cat "$root/kmsd.log"; exit 1; }
  if "$root/bin/kmsctl" --config "$config" status --json 2>/dev/null | grep -Eq '"state": ?"active"'; then
    active=1
    break
  fi
  sleep 0.1
done
[ -n "$active" ] || { echo "kmsd did not make the certificate active within 60 s; its log:"; cat "$root/kmsd.log"; exit 1; }

pem=$root/lab/www/main.pem
echo "== the issued certificate: $pem"
openssl x509 -in "$pem" -noout -subject -issuer -enddate -ext 1.3.6.1.5.5.7.1.26 2>/dev/null ||
  openssl x509 -in "$pem" -noout -subject -issuer -enddate
echo "== kmsctl status"
"$root/bin/kmsctl" --config "$config" status
cat <<DONE

kmsd and kms-lab keep running in the background (logs: $root/kmsd.log, $root/kms-lab.log).
kmsd, kmsctl and kms-lab are in $root/bin, not on PATH; to use them (README, "Using it"):
  export PATH=$root/bin:\$PATH
  export KMSD_CONFIG=$config
  kmsctl events -f            # follow what kmsd does (Ctrl-C to stop)
  kmsctl renew main --wait
stop both with:  kill \$(cat $root/kmsd.pid) \$(cat $root/kms-lab.pid)
DONE
