#!/bin/bash
# in.sh LEADER_PID CMD [ARGS...]
# Run CMD inside the booted container (no machinectl / machined needed): enter all of the
# leader's namespaces (mount, UTS, IPC, net, PID, cgroup; the user namespace is the host's,
# nsenter skips it) and chroot/chdir to its root. A clean environment: the host's variables
# (PATH, LD_*, SYSTEMD_*...) must not leak in. The process stays in the host's cgroup,
# i.e. it is not part of any container unit (fine for clients like systemctl, journalctl).
# Exit code is CMD's.
set -euo pipefail
LEADER=${1:?usage: in.sh LEADER_PID CMD...}; shift
(( $# )) || { echo "in.sh: no command" >&2; exit 2; }
exec nsenter --target "$LEADER" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
  /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
