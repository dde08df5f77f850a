#!/usr/bin/env bash
# Stop the cluster tests/cluster/slurm_up.sh DIR started: cancel its jobs, then end the daemons it recorded in
# DIR/pids (by PID, nothing else), and remove DIR when KEEP is unset.
set -uo pipefail
DIR=${1:?usage: slurm_down.sh DIR}
export SLURM_CONF="$DIR/slurm.conf"
if [ -f "$SLURM_CONF" ]; then
  jobs=$(squeue -h -o %i 2>/dev/null || true)
  [ -n "$jobs" ] && scancel $jobs 2>/dev/null
  for i in $(seq 20); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
fi
if [ -f "$DIR/pids" ]; then
  pids=$(tac "$DIR/pids")   # slurmd, slurmctld, then munged
  for pid in $pids; do kill "$pid" 2>/dev/null; done
  for i in $(seq 20); do
    alive=0; for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.5
  done
  for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
fi
[ -z "${KEEP:-}" ] && rm -rf "$DIR"
exit 0
