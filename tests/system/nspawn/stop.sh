#!/bin/bash
# stop.sh ROOT
# Clean shutdown of the container booted by boot.sh: SIGTERM to the systemd-nspawn process
# (nspawn forwards it to the container's PID 1 as SIGRTMIN+3 = orderly poweroff), wait up to
# STOP_TIMEOUT s (default 60), then SIGKILL nspawn AND the leader (killing nspawn alone
# leaves the container running, orphaned: its PID 1 survives).
# If nspawn is already gone but the leader is not (nspawn was SIGKILLed), the leader gets
# SIGRTMIN+3 itself, then SIGKILL (which kills the whole container PID namespace).
set -uo pipefail
ROOT=$(realpath "${1:?usage: stop.sh ROOT}")
TIMEOUT=${STOP_TIMEOUT:-60}
NSPAWN=$(cat "$ROOT.nspawn.pid" 2>/dev/null || true)
LEADER=$(cat "$ROOT.leader.pid" 2>/dev/null || true)
[[ -n $NSPAWN || -n $LEADER ]] || { echo "stop: no $ROOT.nspawn.pid" >&2; exit 0; }

# alive = exists and is not a zombie (we are usually not its parent, so we cannot reap it)
alive() { [[ -n $1 && -r /proc/$1/stat ]] && [[ $(awk '{print $3}' /proc/"$1"/stat 2>/dev/null) != Z ]]; }
# guard against recycled PIDs: nspawn must be ours (its command line names ROOT), the leader
# have ROOT as its root directory (same dev:inode; readlink /proc/PID/root says "/" after
# nspawn's pivot_root, useless) and be PID 1 of its PID namespace
ours_nspawn() { alive "$1" && tr '\0' ' ' < /proc/"$1"/cmdline 2>/dev/null | grep -q -- "systemd-nspawn.*--directory=$ROOT "; }
ours_leader() { alive "$1" && [[ $(stat -L -c %d:%i /proc/"$1"/root/ 2>/dev/null) == $(stat -c %d:%i "$ROOT") ]] &&
                awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' /proc/"$1"/status; }
ours_nspawn "$NSPAWN" || NSPAWN=
ours_leader "$LEADER" || LEADER=
wait_gone() { for _ in $(seq 1 $((TIMEOUT * 10))); do alive "$1" || return 0; sleep 0.1; done; return 1; }

t0=$(date +%s%N)
rc=0
if [[ -n $NSPAWN ]]; then
  kill -TERM "$NSPAWN"
  if ! wait_gone "$NSPAWN"; then
    echo "stop: nspawn $NSPAWN still there after ${TIMEOUT}s, SIGKILL" >&2
    kill -KILL "$NSPAWN"; rc=1
  fi
fi
if [[ -n $LEADER ]] && alive "$LEADER"; then
  [[ -z $NSPAWN ]] && { echo "stop: nspawn gone, container leader $LEADER orphaned: SIGRTMIN+3" >&2; kill -s RTMIN+3 "$LEADER"; wait_gone "$LEADER"; }
  if alive "$LEADER"; then echo "stop: SIGKILL leader $LEADER" >&2; kill -KILL "$LEADER"; wait_gone "$LEADER"; rc=1; fi
fi
echo "stop: $ROOT stopped in $(( ($(date +%s%N) - t0) / 1000000 ))ms" >&2
rm -f "$ROOT.nspawn.pid" "$ROOT.leader.pid"
exit $rc
