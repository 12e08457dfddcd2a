#!/bin/bash
# cleanup.sh WORK: stops what kmsd_under_systemd.sh left running in WORK when it was killed
# (ctest's TIMEOUT kills it without its EXIT trap): the container and kms-lab, by their PID
# files. Run by ctest as the `system` fixture's cleanup; harmless when nothing is left.
set -uo pipefail
W=${1:?usage: cleanup.sh WORK}
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -d $W ]] || exit 0
"$HERE/nspawn/stop.sh" "$W/root" || true
if [[ -s $W/lab.pid ]] && grep -q kms-lab "/proc/$(cat "$W/lab.pid")/cmdline" 2>/dev/null; then
  kill -TERM "$(cat "$W/lab.pid")"
fi
