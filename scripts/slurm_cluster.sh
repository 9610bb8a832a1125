#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's slurm-wlm and munge, everything in DIR:
#   scripts/slurm_cluster.sh start DIR   # munged, slurmctld, slurmd; partition "debug" of this
#                                         # machine's CPUs; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_cluster.sh stop DIR    # cancels its jobs, stops the daemons (DIR stays)
# The tests and `make test-cluster` run it; clients (sbatch, srun, squeue, submitit) find the
# cluster through SLURM_CONF. Installs slurm-wlm and munge when missing and run as root. Where a
# daemon cannot start, its own log is printed and the exit code is 1.
set -euo pipefail
cmd=${1:?usage: slurm_cluster.sh start DIR | stop DIR}
dir=$(realpath -m "${2:?the cluster directory}")
conf=$dir/slurm.conf

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fail() { echo "slurm_cluster.sh: $1" >&2; for f in "$dir"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }

case $cmd in
  start)
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
      [ "$(id -u)" = 0 ] || { echo "slurm_cluster.sh: install slurm-wlm and munge (as root)" >&2; exit 2; }
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    mkdir -p "$dir"/{state,spool,munge}
    chmod 700 "$dir/munge"
    # munge: its own key and socket in DIR, never the system's
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed" \
      || fail "munged did not start"
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    cat >"$conf" <<CONF
ClusterName=mnist
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock,cred_expire=20
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# the main scheduling pass every 2 s, not 60: a requeued job held for its old credential starts
# when the hold ends, not up to a minute later (no event wakes the scheduler then)
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=10
InactiveLimit=0
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    export SLURM_CONF=$conf
    slurmctld -f "$conf" || fail "slurmctld did not start"
    slurmd -f "$conf" -N localhost || fail "slurmd did not start"
    for _ in $(seq 60); do
      state=$(sinfo -h -o %t -p debug 2>/dev/null || true)
      [ "$state" = idle ] && { echo "export SLURM_CONF=$conf"; exit 0; }
      sleep 1
    done
    fail "the node did not become idle in 60 s (sinfo says: ${state:-nothing})"
    ;;
  stop)
    export SLURM_CONF=$conf
    [ -f "$conf" ] && scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || continue
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    done
    ;;
  *)
    echo "usage: slurm_cluster.sh start DIR | stop DIR" >&2
    exit 2
    ;;
esac
