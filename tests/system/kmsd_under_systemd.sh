#!/bin/bash
# The `system` test: kmsd as an operator meets it. A Debian 12 root (mmdebstrap, cached) is
# booted by a real systemd (systemd-nspawn --boot); the kmsd and kms-lab packages are installed
# inside with dpkg; kms-lab runs on the host as STI-PA, STI-CA and STI-CR. Then, with systemctl,
# journalctl and kmsctl inside the container:
#   - installed, no configuration: enabled, not started (ConditionPathExists)
#   - a broken configuration: ExecStartPre=kmsd --check-config leaves the unit failed with
#     file:line:col in the journal
#   - the HSM PIN passed with LoadCredential=, a deploy hook writing where a drop-in's
#     ReadWritePaths= allows and refused elsewhere
#   - start: active only after READY=1 (PID 1's own log of the notification), STATUS= in
#     systemctl status, the event IDs in journalctl -u kmsd, kmsctl status as an operator in
#     the kmsd group
#   - reload through RELOADING=1 ... READY=1, same main PID
#   - kill -9: restarted, resumes without a second order
#   - a package upgrade while kmsd runs: restarted by the package, state kept
#   - SIGSTOP: killed by the watchdog and restarted
#   - a configuration kmsd cannot read, a state DB from a newer version, a socket unit passing
#     two sockets: failed, with the cause in the journal; nothing lost after the fix
#   - kmsctl backup, then the state and token store wiped and restored with the README's
#     commands: the same certificate, no new order
#   - dpkg -r keeps /var/lib/kmsd, dpkg -P removes it
# It fails (never skips) when the machine cannot do this, naming why.
#
# Env: KMS_PACKAGE_DIR (the .debs: deploy/build-packages.sh), KMS_LAB (a kms-lab binary for
# the host), KMS_SYSTEM_WORK (work directory, made afresh; default under /var/tmp),
# KMS_NSPAWN_CACHE (the root tarball cache, default /var/cache/kmsd-nspawn).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NS=$HERE/nspawn

T0=$(date +%s%N)
ms() { echo $((($(date +%s%N) - T0) / 1000000)); }
step() { echo "system: [$(ms) ms] $*"; }
fail() {
  echo "system: FAIL: $*" >&2
  if [[ -n ${L:-} ]]; then
    echo "--- systemctl status kmsd:" >&2
    IN systemctl status kmsd --no-pager -n 0 >&2 || true
    echo "--- journalctl -u kmsd (tail):" >&2
    IN journalctl -u kmsd -o short-monotonic --no-pager -n 60 >&2 || true
  fi
  exit 1
}

[[ $(id -u) == 0 ]] || fail "needs root: systemd-nspawn boots a container and mmdebstrap builds its root as root"
for tool in systemd-nspawn mmdebstrap nsenter zstd sqlite3 useradd; do
  command -v "$tool" >/dev/null || fail "needs $tool (deploy/install-deps.sh installs systemd-container, mmdebstrap, zstd)"
done
PKG=${KMS_PACKAGE_DIR:?KMS_PACKAGE_DIR: the directory with kmsd_*.deb and kms-lab_*.deb (deploy/build-packages.sh)}
KMS_LAB=${KMS_LAB:?KMS_LAB: a kms-lab binary to run on the host}
KMSD_DEB=$(ls "$PKG"/kmsd_*.deb 2>/dev/null | head -1)
LAB_DEB=$(ls "$PKG"/kms-lab_*.deb 2>/dev/null | head -1)
[[ -n $KMSD_DEB && -n $LAB_DEB ]] || fail "no kmsd_*.deb and kms-lab_*.deb in $PKG (run deploy/build-packages.sh)"

W=${KMS_SYSTEM_WORK:-/var/tmp/kmsd-system-test}
ROOT=$W/root LAB=$W/lab
L= LABPID=
# A run killed by ctest's TIMEOUT leaves its container: stop it by its PID files first.
"$HERE/cleanup.sh" "$W" >/dev/null 2>&1 || true
rm -rf "$W"
mkdir -p "$W"
cleanup() {
  local rc=$?
  "$NS/stop.sh" "$ROOT" >/dev/null 2>&1 || true
  if [[ -n $LABPID ]] && kill -0 "$LABPID" 2>/dev/null; then
    kill -TERM "$LABPID"
    wait "$LABPID" 2>/dev/null || true
  fi
  if ((rc == 0)); then
    rm -rf "$W"
    echo "system: PASS in $(ms) ms"
  else
    echo "system: work directory kept: $W" >&2
  fi
}
trap cleanup EXIT

IN() { "$NS/in.sh" "$L" "$@"; }
show() { IN systemctl show kmsd -p "$1" --value; }
journal() { IN journalctl -u kmsd -o cat --no-pager "$@"; }
# PID 1's own log lines about kmsd.service (the notifications it received, its state changes).
pid1() { IN journalctl _PID=1 -o cat --no-pager "$@"; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.2 s.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$(($(date +%s) + seconds))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || fail "$what: not within ${seconds}s"
    sleep 0.2
  done
}
# (Output captured first: grep -q closing the pipe early would fail the pipeline under pipefail.)
journal_has() { grep -q -- "$1" <<<"$(journal)"; }
pid1_has() { grep -q -- "$1" <<<"$(pid1)"; }
active_with_restarts() { [[ $(show ActiveState) == active && $(show NRestarts) == "$1" ]]; }
count_in_journal() { journal | grep -c "$1" || true; }
kmsd_uid() { awk -F: '$1=="kmsd"{print $3}' "$ROOT/etc/passwd"; }

# 1. The root and the packages (dpkg inside a non-booted nspawn: /proc is there for postinst).
"$NS/make-root.sh" "$ROOT" || fail "no Debian 12 root (make-root.sh above says why)"
mkdir -p "$W/debs"
cp "$KMSD_DEB" "$LAB_DEB" "$W/debs/"
NSPAWN_ONCE=(systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --resolv-conf=off --link-journal=no --timezone=off)
"${NSPAWN_ONCE[@]}" --bind-ro="$W/debs:/mnt/debs" sh -c 'dpkg -i /mnt/debs/*.deb' >"$W/dpkg.log" 2>&1 ||
  { cat "$W/dpkg.log" >&2; fail "dpkg -i of the packages inside the root"; }
KUID=$(kmsd_uid)
[[ -n $KUID ]] || fail "the package made no kmsd user (sysusers.d)"
# (Numeric: the host's names for these uids are not the container's.)
[[ $(stat -c '%u %a' "$ROOT/var/lib/kmsd-softhsm") == "$KUID 700" ]] ||
  fail "tmpfiles.d: /var/lib/kmsd-softhsm is uid and mode $(stat -c '%u %a' "$ROOT/var/lib/kmsd-softhsm"), not $KUID 700"
[[ -L $ROOT/etc/systemd/system/multi-user.target.wants/kmsd.service ]] || fail "the package did not enable kmsd.service"
[[ ! -e $ROOT/etc/kmsd/kmsd.toml ]] || fail "the package shipped /etc/kmsd/kmsd.toml"
# An operator: a login in the kmsd group, nothing more.
useradd --root "$ROOT" --create-home --groups kmsd noc
step "packages installed (kmsd uid $KUID)"

# 2. kms-lab on the host; the container shares the host's network and sees it at 127.0.0.1.
mkdir -p "$LAB"
"$KMS_LAB" --dir "$LAB" </dev/null >"$W/lab.log" 2>&1 &
LABPID=$!
echo "$LABPID" >"$W/lab.pid"
wait_for 30 "kms-lab listening" grep -q 'kms-lab listening on https://127.0.0.1:' "$W/lab.log"
chown "$KUID:$KUID" "$LAB/www" # written by the container's kmsd through a bind mount
step "kms-lab up: $(grep -o 'https://127.0.0.1:[0-9]*' "$W/lab.log")"

# 3. Boot. With no configuration the enabled unit is skipped.
L=$("$NS/boot.sh" "$ROOT" --bind="$LAB/www:/var/www/sti-cr" --bind-ro="$W/debs:/mnt/debs") ||
  fail "systemd-nspawn cannot boot the root here (boot.sh above says why)"
# PID 1 logs each notification it receives: READY/RELOADING/STATUS become visible in the journal.
IN systemd-analyze log-level debug
[[ $(show ActiveState) == inactive ]] || fail "kmsd is $(show ActiveState) without a configuration"
# (systemctl status exits 3 for an inactive unit.)
grep -q 'ConditionPathExists=/etc/kmsd/kmsd.toml was not met' <<<"$(IN systemctl status kmsd --no-pager 2>&1 || true)" ||
  fail "systemctl status does not say the configuration is missing"
step "booted; kmsd waits for /etc/kmsd/kmsd.toml"

# 4. The configuration, as the README's Install section has it: /etc/kmsd root:kmsd 0750, the
# TOML root:kmsd 0640, the secrets kmsd's own 0600, except the HSM PIN, which only root can
# read and systemd hands over with LoadCredential=.
E=$ROOT/etc/kmsd
install -d -o 0 -g "$KUID" -m 0750 "$E"
sed -e "s#$LAB/softhsm/hsm.pin#/run/credentials/kmsd.service/hsm.pin#g" \
  -e "s#$LAB/state#/var/lib/kmsd#g" \
  -e "s#$LAB/kmsd.sock#/run/kmsd/control.sock#g" \
  -e "s#$LAB/www#/var/www/sti-cr#g" \
  -e "s#$LAB/#/etc/kmsd/#g" \
  "$LAB/kmsd.toml" >"$W/kmsd.toml"
echo 'deploy_hook = "/usr/local/bin/sbc-deploy"' >>"$W/kmsd.toml"
for f in sti-pa-root.pem sti-pa-crl.pem sti-ca-root.pem tls-ca.pem; do
  install -o 0 -g "$KUID" -m 0640 "$LAB/$f" "$E/$f"
done
install -o 0 -g 0 -m 0600 "$LAB/softhsm/hsm.pin" "$E/hsm.pin"
install -o "$KUID" -g "$KUID" -m 0600 "$LAB/sti-pa.password" "$E/sti-pa.password"
install -o "$KUID" -g "$KUID" -m 0600 "$LAB/eab.key" "$E/eab.key"
sed -e "s#^directories.tokendir.*#directories.tokendir = /var/lib/kmsd-softhsm/tokens#" "$LAB/softhsm2.conf" >"$W/softhsm2.conf"
install -o 0 -g "$KUID" -m 0640 "$W/softhsm2.conf" "$E/softhsm2.conf"
install -d -o "$KUID" -g "$KUID" -m 0700 "$ROOT/var/lib/kmsd-softhsm/tokens"
cp -a "$LAB"/softhsm/tokens/. "$ROOT/var/lib/kmsd-softhsm/tokens/"
chown -R "$KUID:$KUID" "$ROOT/var/lib/kmsd-softhsm/tokens"
# The deploy hook: copies the chain for an SBC to /srv/sbc (allowed by the drop-in below) and
# records whether it could write anywhere else (ProtectSystem=strict says no).
install -d -o "$KUID" -g "$KUID" -m 0755 "$ROOT/srv/sbc"
cat >"$ROOT/usr/local/bin/sbc-deploy" <<'HOOK'
#!/bin/sh
set -e
cp "$KMS_CERT_PATH" /srv/sbc/chain.pem
if touch /usr/local/hook-probe 2>/dev/null; then echo "wrote /usr/local" >/srv/sbc/probe; else echo "refused" >/srv/sbc/probe; fi
HOOK
chmod 0755 "$ROOT/usr/local/bin/sbc-deploy"
mkdir -p "$ROOT/etc/systemd/system/kmsd.service.d"
cat >"$ROOT/etc/systemd/system/kmsd.service.d/site.conf" <<'DROPIN'
[Service]
LoadCredential=hsm.pin:/etc/kmsd/hsm.pin
ReadWritePaths=/srv/sbc
# Short enough for this test; the shipped unit says 60s.
WatchdogSec=10s
DROPIN
IN systemctl daemon-reload

# 5. A broken configuration first: refused with exit 78 (not restarted), file:line:col in the journal.
{
  cat "$W/kmsd.toml"
  echo 'renew_befor = "10d"'
} >"$W/broken.toml"
line=$(wc -l <"$W/broken.toml")
install -o 0 -g "$KUID" -m 0640 "$W/broken.toml" "$E/kmsd.toml"
if IN systemctl start kmsd 2>"$W/start.err"; then fail "systemctl start succeeded with a broken configuration"; fi
# failed, not auto-restart (which systemd enters at once when it means to restart).
[[ $(show ActiveState)/$(show SubState) == failed/failed ]] ||
  fail "kmsd is $(show ActiveState)/$(show SubState) after a broken configuration, not failed/failed"
journal_has "/etc/kmsd/kmsd.toml:$line:1: \[certificate.main\] renew_befor: unknown key" ||
  fail "the journal does not name /etc/kmsd/kmsd.toml:$line:1"
[[ $(count_in_journal KMS_STARTED) == 0 ]] || fail "kmsd ran with a broken configuration"
step "broken configuration: failed, journal names /etc/kmsd/kmsd.toml:$line:1"

# 6. The good configuration: start returns once READY=1 arrived.
install -o 0 -g "$KUID" -m 0640 "$W/kmsd.toml" "$E/kmsd.toml"
IN systemctl reset-failed kmsd
IN systemctl start kmsd || fail "systemctl start kmsd"
[[ $(show ActiveState) == active ]] || fail "kmsd is $(show ActiveState) right after systemctl start"
status=$(show StatusText)
[[ $status == *"last error"* ]] || fail "no STATUS= line when start returned: '$status'"
pid1_has 'kmsd.service: Got notification message from PID [0-9]* (READY=1, STATUS=' ||
  fail "PID 1 logged no READY=1 from kmsd"
journal_has KMS_STARTED || fail "no KMS_STARTED in journalctl -u kmsd"
wait_for 60 "the certificate issued, published and active" sh -c "'$NS/in.sh' '$L' journalctl -u kmsd -o cat --no-pager | grep -q KMS_CERT_ACTIVATED"
for id in KMS_ORDER_CREATED KMS_CERT_ISSUED KMS_CERT_PUBLISHED KMS_CERT_ACTIVATED; do
  journal_has "$id" || fail "no $id in journalctl -u kmsd"
done
wait_for 30 "STATUS= naming the active certificate" sh -c "'$NS/in.sh' '$L' systemctl status kmsd --no-pager | grep -q 'Status: \"1 certificate active; next renewal main in'"
ls "$LAB"/www/main/*.pem >/dev/null 2>&1 || fail "nothing published in the STI-CR web root"
# The HSM PIN came from the credential, and the hook wrote where the drop-in allows only.
IN test -f /run/credentials/kmsd.service/hsm.pin || fail "no credential directory for kmsd"
wait_for 30 "the deploy hook's copy" test -s "$ROOT/srv/sbc/chain.pem"
[[ $(cat "$ROOT/srv/sbc/probe" 2>/dev/null) == refused ]] || fail "the deploy hook could write outside ReadWritePaths"
status_out=$(IN runuser -u noc -- kmsctl status) || fail "kmsctl status as an operator (noc) in the kmsd group"
grep -q 'main' <<<"$status_out" || fail "kmsctl status does not list main: $status_out"
grep -qi 'active' <<<"$status_out" || fail "kmsctl status shows no active certificate: $status_out"
serial=$(ls "$LAB"/www/main/ | grep -v '^current' | head -1)
step "active after READY; certificate issued, published ($serial), hook ran; kmsctl works for the operator"

# kms_clock_synchronized under the unit: adjtimex is refused there (SystemCallFilter,
# ProtectClock), so kmsd asks systemd-timedated (bus-activated) for NTPSynchronized; the series
# must say what timedatectl says.
ntp=$(IN timedatectl show -p NTPSynchronized --value) || fail "timedatectl show in the container"
want=0
[[ $ntp == yes ]] && want=1
clock=$(IN curl -s --unix-socket /run/kmsd/control.sock http://kmsd/metrics | grep '^kms_clock_synchronized ' || true)
[[ $clock == "kms_clock_synchronized $want" ]] ||
  fail "kms_clock_synchronized under kmsd.service: '$clock', timedatectl says NTPSynchronized=$ntp"
step "kms_clock_synchronized $want under the unit, as timedated says (NTPSynchronized=$ntp)"

# 7. Reload: RELOADING=1 ... READY=1, the same process.
main=$(show MainPID)
IN systemctl reload kmsd || fail "systemctl reload kmsd"
wait_for 10 "KMS_RELOADED" sh -c "'$NS/in.sh' '$L' journalctl -u kmsd -o cat --no-pager | grep -q KMS_RELOADED"
pid1_has 'kmsd.service: Got notification message from PID [0-9]* (RELOADING=1, MONOTONIC_USEC=' ||
  fail "PID 1 logged no RELOADING=1 from kmsd"
[[ $(show MainPID) == "$main" && $(show ActiveState) == active ]] || fail "reload changed the main PID or the state"
step "reload through RELOADING=1, same main PID $main"

# 8. kill -9: restarted (Restart=on-failure), no second order.
IN kill -9 "$main"
wait_for 60 "restart after kill -9" active_with_restarts 1
[[ $(show MainPID) != "$main" ]] || fail "same main PID after kill -9"
wait_for 30 "KMS_STARTED twice" sh -c "[ \$('$NS/in.sh' '$L' journalctl -u kmsd -o cat --no-pager | grep -c KMS_STARTED) -ge 2 ]"
[[ $(count_in_journal KMS_ORDER_CREATED) == 1 ]] || fail "a second order after kill -9"
step "kill -9: restarted, one order"

# 9. A package upgrade (the same version again) while kmsd runs: the package restarts it.
main=$(show MainPID)
IN dpkg -i /mnt/debs/"$(basename "$KMSD_DEB")" >"$W/upgrade.log" 2>&1 || { cat "$W/upgrade.log" >&2; fail "dpkg -i while running"; }
wait_for 30 "kmsd active after the upgrade" test "$(show ActiveState)" = active
[[ $(show MainPID) != "$main" ]] || fail "the upgrade did not restart kmsd"
[[ $(count_in_journal KMS_ORDER_CREATED) == 1 ]] || fail "a second order after the upgrade"
[[ -f $ROOT/etc/kmsd/kmsd.toml && -s $ROOT/var/lib/kmsd/kmsd.db ]] || fail "the upgrade lost the configuration or the state"
step "upgrade while running: restarted, state kept"

# 10. SIGSTOP: the event loop stops sending WATCHDOG=1; systemd kills and restarts kmsd.
main=$(show MainPID)
restarts=$(show NRestarts)
IN kill -STOP "$main"
wait_for 90 "restart by the watchdog" active_with_restarts $((restarts + 1))
pid1_has 'kmsd.service: Watchdog timeout' || fail "PID 1 logged no watchdog timeout"
[[ $(count_in_journal KMS_ORDER_CREATED) == 1 ]] || fail "a second order after the watchdog restart"
step "SIGSTOP: killed by the watchdog, restarted"

# 11. Bad input, each fixed afterwards with nothing lost.
# A configuration kmsd's user cannot read.
chmod 0600 "$E/kmsd.toml"
if IN systemctl restart kmsd; then fail "started with a configuration kmsd cannot read"; fi
journal_has '/etc/kmsd/kmsd.toml.*Permission denied' || fail "the journal does not say /etc/kmsd/kmsd.toml is unreadable"
chmod 0640 "$E/kmsd.toml"
IN systemctl reset-failed kmsd
IN systemctl start kmsd || fail "start after the configuration was made readable"
# A state DB written by a newer kmsd (a downgrade): refused, never opened for writing.
IN systemctl stop kmsd
version=$(sqlite3 "$ROOT/var/lib/kmsd/kmsd.db" 'PRAGMA user_version')
sqlite3 "$ROOT/var/lib/kmsd/kmsd.db" "PRAGMA user_version = $((version + 1))"
if IN systemctl start kmsd; then fail "started on a state DB from a newer version"; fi
journal_has 'newer' || fail "the journal does not say the state DB is from a newer kmsd"
[[ $(sqlite3 "$ROOT/var/lib/kmsd/kmsd.db" 'PRAGMA user_version') == $((version + 1)) ]] || fail "kmsd rewrote a newer DB"
sqlite3 "$ROOT/var/lib/kmsd/kmsd.db" "PRAGMA user_version = $version"
IN systemctl reset-failed kmsd
IN systemctl start kmsd || fail "start after the schema version was put back"
# A socket unit passing two sockets (on free loopback ports: the host's network is shared).
p1=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
p2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$ROOT/etc/systemd/system/kmsd-http01.socket.d"
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\nListenStream=127.0.0.1:%s\n' "$p1" "$p2" \
  >"$ROOT/etc/systemd/system/kmsd-http01.socket.d/two.conf"
IN systemctl daemon-reload
# (systemd refuses to start a socket unit whose service already runs.)
IN systemctl stop kmsd
IN systemctl start kmsd-http01.socket
if IN systemctl start kmsd; then fail "started with two sockets named http01"; fi
journal_has "two sockets named 'http01' were passed" || fail "the journal does not name the two sockets"
IN systemctl stop kmsd-http01.socket
rm -r "$ROOT/etc/systemd/system/kmsd-http01.socket.d"
IN systemctl daemon-reload
IN systemctl reset-failed kmsd
IN systemctl start kmsd || fail "start after the second socket was removed"
[[ $(count_in_journal KMS_ORDER_CREATED) == 1 ]] || fail "a second order after the bad-input cases"
# The same certificate row (the first line names kmsd's PID, which changed).
now_out=$(IN runuser -u noc -- kmsctl status) || fail "kmsctl status after the bad-input cases"
[[ $(sed 1d <<<"$now_out") == "$(sed 1d <<<"$status_out")" ]] ||
  fail "kmsctl status changed over the bad-input cases: $now_out (was: $status_out)"
step "unreadable configuration, newer DB, two sockets: each refused with its cause, nothing lost"

# 12. kmsctl backup, then the README's restore after the state and the token store are wiped.
backup_out=$(IN kmsctl backup /root/kmsd-backup) || fail "kmsctl backup: $backup_out"
grep -q 'token store file(s)' <<<"$backup_out" || fail "the backup has no token store: $backup_out"
IN sh -ec '
  systemctl stop kmsd
  B=/root/kmsd-backup; T=/var/lib/kmsd-softhsm/tokens
  rm -rf /var/lib/kmsd/* "$T"/*
  install -o kmsd -g kmsd -m 0600 "$B/kmsd.db" /var/lib/kmsd/kmsd.db
  cp -r "$B/tokens/." "$T/" && chown -R kmsd:kmsd "$T" && chmod -R go= "$T"
  systemctl start kmsd' || fail "the README's restore commands"
wait_for 30 "kmsctl status after the restore" sh -c "'$NS/in.sh' '$L' runuser -u noc -- kmsctl status | grep -q '^main  active'"
now_out=$(IN runuser -u noc -- kmsctl status)
[[ $(sed 1d <<<"$now_out") == "$(sed 1d <<<"$status_out")" ]] ||
  fail "not the same certificate after the restore: $now_out (was: $status_out)"
[[ $(count_in_journal KMS_ORDER_CREATED) == 1 ]] || fail "a second order after the restore"
step "kmsctl backup; restored from it after a wipe: the same certificate, no order"

# 13. Remove keeps the state; purge removes it.
IN systemctl stop kmsd
IN dpkg -r kmsd >"$W/remove.log" 2>&1 || { cat "$W/remove.log" >&2; fail "dpkg -r kmsd"; }
[[ -s $ROOT/var/lib/kmsd/kmsd.db ]] || fail "dpkg -r removed /var/lib/kmsd"
[[ -n $(ls -A "$ROOT/var/lib/kmsd-softhsm/tokens") ]] || fail "dpkg -r removed the token store"
IN dpkg -P kmsd >"$W/purge.log" 2>&1 || { cat "$W/purge.log" >&2; fail "dpkg -P kmsd"; }
[[ ! -e $ROOT/var/lib/kmsd ]] || fail "dpkg -P left /var/lib/kmsd"
[[ ! -e $ROOT/var/lib/kmsd-softhsm ]] || fail "dpkg -P left the token store /var/lib/kmsd-softhsm"
step "dpkg -r kept /var/lib/kmsd and the token store; dpkg -P removed them"
