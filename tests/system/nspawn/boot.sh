#!/bin/bash
# boot.sh ROOT [extra systemd-nspawn args...]
# Boot ROOT with systemd-nspawn in the background, sharing the host's network (so the
# container reaches services on the host's 127.0.0.1), without machined (--register=no) and
# without a transient scope (--keep-unit): PID 1 of this host is not systemd.
# Waits until `systemctl is-system-running --wait` answers inside, then prints the container
# leader's PID (its PID 1 seen from the host) on stdout.
# Files (beside ROOT, not inside it): ROOT.nspawn.pid, ROOT.leader.pid, ROOT.console.log
# Env: BOOT_TIMEOUT (s, default 90)
set -euo pipefail
ROOT=$(realpath "${1:?usage: boot.sh ROOT [nspawn args]}"); shift
TIMEOUT=${BOOT_TIMEOUT:-90}
LOG=$ROOT.console.log

if [[ -s $ROOT.nspawn.pid ]] && kill -0 "$(cat "$ROOT.nspawn.pid")" 2>/dev/null; then
  echo "boot: $ROOT already running (nspawn PID $(cat "$ROOT.nspawn.pid"))" >&2; exit 1
fi
rm -f "$ROOT.nspawn.pid" "$ROOT.leader.pid"

t0=$(date +%s%N)
# --console=read-only: the container's console goes to our stdout (the log), no input.
# --resolv-conf=off / --timezone=off: leave the root's files alone (we address 127.0.0.1).
# --link-journal=no: keep the journal inside the root, nothing under the host's /var/log.
# setsid: own session/process group, so the caller's Ctrl-C / job control does not reach it.
setsid systemd-nspawn --quiet --boot --register=no --keep-unit \
  --directory="$ROOT" --machine="$(basename "$ROOT")" \
  --console=read-only --resolv-conf=off --timezone=off --link-journal=no \
  "$@" </dev/null >"$LOG" 2>&1 &
NSPAWN=$!
echo "$NSPAWN" > "$ROOT.nspawn.pid"

die() { echo "boot: $*" >&2; echo "--- $LOG (tail):" >&2; tail -40 "$LOG" >&2; exit 1; }

# The leader is nspawn's child whose innermost PID is 1 (nspawn is a child subreaper; the
# intermediate "outer child" exits after forking it).
LEADER=
for _ in $(seq 1 $((TIMEOUT * 10))); do
  kill -0 "$NSPAWN" 2>/dev/null || die "systemd-nspawn exited early"
  for c in $(cat /proc/"$NSPAWN"/task/*/children 2>/dev/null); do
    if awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' /proc/"$c"/status 2>/dev/null; then LEADER=$c; fi
  done
  [[ -n $LEADER ]] && break
  sleep 0.1
done
[[ -n $LEADER ]] || die "no container leader after ${TIMEOUT}s"
echo "$LEADER" > "$ROOT.leader.pid"

# systemctl cannot connect before PID 1 has made /run/systemd/private: retry until it answers.
# is-system-running --wait blocks while "initializing"/"starting", then prints the state
# (running, or degraded if a unit failed: both mean boot is over).
state=
deadline=$(( $(date +%s) + TIMEOUT ))
while (( $(date +%s) < deadline )); do
  kill -0 "$NSPAWN" 2>/dev/null || die "systemd-nspawn exited during boot"
  state=$(timeout $(( deadline - $(date +%s) + 1 )) \
    "$(dirname "$0")/in.sh" "$LEADER" systemctl is-system-running --wait 2>/dev/null) || true
  case $state in running|degraded) break ;; esac
  sleep 0.2
done
case $state in
  running|degraded) ;;
  *) die "system state '${state:-none}' after ${TIMEOUT}s" ;;
esac
echo "boot: $ROOT up in $(( ($(date +%s%N) - t0) / 1000000 ))ms, state=$state, nspawn=$NSPAWN leader=$LEADER" >&2
echo "$LEADER"
