#!/usr/bin/env bash
# The quickstart: installs the Debian packages, builds and installs kmsd, kmsctl and
# kms-lab into ./.kms-quickstart, starts kms-lab (a local STI-PA + STI-CA on 127.0.0.1)
# in the background, and runs `kmsd --once` on the configuration kms-lab wrote: a SoftHSM2
# token, an SPC token from the STI-PA, ACME with tkauth-01, a checked SHAKEN certificate
# published to a local STI-CR web root. It ends with `kmsctl status`. Re-running it reuses
# the lab's PKI, the token and the state.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.kms-quickstart

bash deploy/install-deps.sh

cmake -S . -B build-quickstart -DCMAKE_BUILD_TYPE=Release -DKMS_BUILD_TESTS=OFF >/dev/null
cmake --build build-quickstart -j"$(nproc)"
cmake --install build-quickstart --prefix "$root" >/dev/null

# A kms-lab from an earlier run is stopped first (by its PID).
if [ -f "$root/kms-lab.pid" ] && kill -0 "$(cat "$root/kms-lab.pid")" 2>/dev/null; then
  kill "$(cat "$root/kms-lab.pid")"
  sleep 1
fi
mkdir -p "$root/lab"
"$root/bin/kms-lab" --dir "$root/lab" >"$root/kms-lab.log" 2>&1 &
echo $! >"$root/kms-lab.pid"
for _ in $(seq 100); do
  grep -q 'kms-lab listening on' "$root/kms-lab.log" && break
  kill -0 "$(cat "$root/kms-lab.pid")" 2>/dev/null || { cat "$root/kms-lab.log"; exit 1; }
  sleep 0.1
done
grep 'kms-lab listening on' "$root/kms-lab.log"

export SOFTHSM2_CONF=$root/lab/softhsm2.conf
echo "== kmsd --once"
"$root/bin/kmsd" --config "$root/lab/kmsd.toml" --once

pem=$root/lab/www/main.pem
echo "== the issued certificate: $pem"
openssl x509 -in "$pem" -noout -subject -issuer -enddate -ext 1.3.6.1.5.5.7.1.26 2>/dev/null ||
  openssl x509 -in "$pem" -noout -subject -issuer -enddate
echo "== kmsctl status"
"$root/bin/kmsctl" --config "$root/lab/kmsd.toml" status
cat <<DONE

kmsd, kmsctl and kms-lab are in $root/bin; the config kms-lab wrote is $root/lab/kmsd.toml
(use it with SOFTHSM2_CONF=$SOFTHSM2_CONF). kms-lab keeps running in the background;
stop it with:  kill \$(cat $root/kms-lab.pid)
DONE
