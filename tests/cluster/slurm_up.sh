#!/usr/bin/env bash
# Start a one-node Slurm cluster on localhost (for tests of `llamafactory-ext study --executor slurm`):
#   eval "$(tests/cluster/slurm_up.sh [DIR])"     # prints `export SLURM_CONF=DIR/slurm.conf`
#   ... sbatch / squeue / llamafactory-ext study STUDY.yaml --executor slurm ...
#   tests/cluster/slurm_down.sh DIR               # stops what this started (by the PIDs in DIR/pids)
# Installs Debian's slurm-wlm and munge if missing (root). Foreground daemons, no systemd, no cgroups, no
# accounting: munged on a private socket, slurmctld and slurmd with state/spool/log/pid files under DIR.
# Needs root (SlurmUser=root). Exits non-zero with the reason when the daemons do not come up.
set -euo pipefail
DIR=${1:-$(mktemp -d /tmp/slurm-test.XXXXXX)}
DIR=$(cd "$DIR" 2>/dev/null && pwd || (mkdir -p "$DIR" && cd "$DIR" && pwd))
log() { echo "[slurm_up] $*" >&2; }

if [ "$(id -u)" != 0 ]; then log "needs root (SlurmUser=root)"; exit 2; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >&2
fi

mkdir -p "$DIR"/{state,spool,log,run,munge}
chmod 700 "$DIR/munge"
: > "$DIR/pids"
# munge: a private key and socket, so a system munged (if any) is left alone
KEY="$DIR/munge/munge.key"
[ -s "$KEY" ] || dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
chmod 400 "$KEY"
SOCKET="$DIR/munge/munge.socket"
munged -F --force --key-file="$KEY" --socket="$SOCKET" --pid-file="$DIR/run/munged.pid" \
  --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" >"$DIR/log/munged.out" 2>&1 &
echo $! >> "$DIR/pids"

PORT=$(( 20000 + RANDOM % 20000 ))
cat > "$DIR/slurm.conf" <<CONF
ClusterName=lfxtest
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$(( PORT + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
NodeName=localhost CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"

for i in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { log "munged did not start: $(tail -5 "$DIR/log/munged.log" "$DIR/log/munged.out" 2>&1)"; exit 3; }

slurmctld -D -i -f "$SLURM_CONF" >"$DIR/log/slurmctld.out" 2>&1 &
echo $! >> "$DIR/pids"
slurmd -D -N localhost -f "$SLURM_CONF" >"$DIR/log/slurmd.out" 2>&1 &
echo $! >> "$DIR/pids"

for i in $(seq 60); do
  state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
if [ "${state:-}" != idle ]; then
  log "the node did not become idle (sinfo: '${state:-no answer}'):"
  tail -n 5 "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log "$DIR"/log/*.out >&2 2>/dev/null || true
  exit 4
fi
log "node localhost idle; daemons $(tr '\n' ' ' < "$DIR/pids")(in $DIR/pids)"
echo "export SLURM_CONF=$SLURM_CONF"
