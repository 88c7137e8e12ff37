#!/usr/bin/env bash
# Stop exactly what hpc/devcluster/up.sh started (listed in STATE/pids), newest first.
#   hpc/devcluster/down.sh [--state DIR] [--keep]     (--keep leaves logs and state on disk)
set -uo pipefail
STATE=${HPCFT_DEVCLUSTER_STATE:-/tmp/hpcft-devcluster}
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --state) STATE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "down.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$STATE/pids" ] || { echo "down.sh: nothing started from $STATE" >&2; exit 0; }
export SLURM_CONF=$STATE/etc/slurm.conf
scancel --state=RUNNING,PENDING --full 2>/dev/null || true
tac "$STATE/pids" | while read -r kind what; do
  case "$kind" in
    pid)
      kill "$what" 2>/dev/null || continue
      for _ in $(seq 50); do kill -0 "$what" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$what" 2>/dev/null || true ;;
    netns) ip netns pids "$what" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$what" 2>/dev/null || true ;;
    link) ip link del "$what" 2>/dev/null || true ;;
  esac
done
rm -f "$STATE/pids"
[ "$KEEP" = 1 ] || rm -rf "$STATE"
echo "dev cluster in $STATE stopped"
