#!/usr/bin/env bash
# The quickstart: installs the Debian packages, builds and installs kmsd/kmsctl into
# ./.kms-quickstart, creates a SoftHSM2 token there (the embedded default HSM) with a
# random PIN, writes a kmsd.toml for it and checks that configuration end to end
# (config, HSM login, state DB). Re-running it reuses the token and the state.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.kms-quickstart

bash deploy/install-deps.sh

cmake -S . -B build-quickstart -DCMAKE_BUILD_TYPE=Release -DKMS_BUILD_TESTS=OFF >/dev/null
cmake --build build-quickstart -j"$(nproc)"
cmake --install build-quickstart --prefix "$root" >/dev/null

mkdir -p "$root/softhsm/tokens" "$root/state" "$root/www"
chmod 700 "$root/softhsm" "$root/state"
cat > "$root/softhsm/softhsm2.conf" <<CONF
directories.tokendir = $root/softhsm/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF=$root/softhsm/softhsm2.conf
if ! softhsm2-util --show-slots 2>/dev/null | grep -q 'Label: *kms *$'; then
  umask 077
  od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$root/softhsm/hsm.pin"
  od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$root/softhsm/so.pin"
  softhsm2-util --init-token --free --label kms \
    --pin "$(cat "$root/softhsm/hsm.pin")" --so-pin "$(cat "$root/softhsm/so.pin")" >/dev/null
fi

module=$(find /usr/lib -name libsofthsm2.so -path '*softhsm*' | head -n 1)
cat > "$root/kmsd.toml" <<CONF
# Written by deploy/quickstart.sh: kmsd against a local SoftHSM2 token.
[daemon]
state_dir = "$root/state"
control_socket = "$root/kmsd.sock"

[hsm]
module = "$module"
token_label = "kms"
pin_file = "$root/softhsm/hsm.pin"

[acme]
directory_url = "https://127.0.0.1:14000/dir"

[publisher]
web_root = "$root/www"
base_url = "https://127.0.0.1:8443/"

[[certificate]]
name = "web"
identifiers = ["dns:localhost"]
CONF

echo "== kmsd --check-config"
"$root/bin/kmsd" --config "$root/kmsd.toml" --check-config
echo "== kmsctl keys"
"$root/bin/kmsctl" --config "$root/kmsd.toml" keys
echo "== kmsctl status"
"$root/bin/kmsctl" --config "$root/kmsd.toml" status
cat <<DONE

kmsd and kmsctl are in $root/bin; the config is $root/kmsd.toml.
Use them with:  export SOFTHSM2_CONF=$SOFTHSM2_CONF
DONE
