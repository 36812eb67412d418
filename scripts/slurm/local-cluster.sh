#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd on localhost with
# their own key, socket, ports, state and logs in a folder, so nothing of the system's configuration is
# used or changed.
#
#   source scripts/slurm/local-cluster.sh
#   local_cluster_start DIR     # writes DIR/slurm.conf, starts the daemons, waits for the node; exports
#                               # SLURM_CONF (every s* command then talks to this cluster); returns 77 when
#                               # Slurm or munge is not installed or cannot start here (the reason on stderr)
#   local_cluster_stop DIR      # stops the daemons it started (by their pid files), in any state
#
# Needs root (slurmd runs jobs as their user, and the daemons run as SlurmUser=root here).

local_cluster_skip() {
  echo "local-cluster: SKIP: $*" >&2
  return 77
}

local_cluster_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

local_cluster_start() {
  local dir=$1
  local tool
  for tool in munged mungekey slurmctld slurmd sbatch squeue scontrol sinfo; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null 2>&1 ||
      { local_cluster_skip "$tool is not installed (Debian: apt-get install slurm-wlm munge)"; return 77; }
  done
  export PATH=$PATH:/usr/sbin
  [ "$(id -u)" -eq 0 ] || { local_cluster_skip "not root: slurmd must run as root to start jobs"; return 77; }
  mkdir -p "$dir"/{munge,state,spool,log}
  chmod 700 "$dir/munge"
  mungekey --create --keyfile "$dir/munge/munge.key" --force 2>"$dir/log/mungekey.err" ||
    { local_cluster_skip "mungekey failed: $(cat "$dir/log/mungekey.err")"; return 77; }
  munged --socket "$dir/munge/munge.socket" --key-file "$dir/munge/munge.key" --pid-file "$dir/munge/munged.pid" \
    --log-file "$dir/log/munged.log" --seed-file "$dir/munge/munged.seed" --force 2>"$dir/log/munged.err" ||
    { local_cluster_skip "munged cannot start: $(cat "$dir/log/munged.err" "$dir/log/munged.log" 2>/dev/null | tail -3)"; return 77; }
  local cpus memory ctld_port d_port
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  ctld_port=$(local_cluster_free_port)
  d_port=$(local_cluster_free_port)
  cat >"$dir/slurm.conf" <<CONF
# Written by scripts/slurm/local-cluster.sh: one node, this machine, for tests.
ClusterName=dplr-local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" -i 2>"$dir/log/slurmctld.err" ||
    { local_cluster_skip "slurmctld cannot start: $(tail -3 "$dir/log/slurmctld.err" "$dir/log/slurmctld.log" 2>/dev/null)"; return 77; }
  slurmd -f "$SLURM_CONF" -N localhost 2>"$dir/log/slurmd.err" ||
    { local_cluster_skip "slurmd cannot start: $(tail -3 "$dir/log/slurmd.err" "$dir/log/slurmd.log" 2>/dev/null)"; return 77; }
  local waited
  for waited in $(seq 1 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then return 0; fi
    sleep 0.5
  done
  local_cluster_skip "the node did not come up in 30 s: $(sinfo -h -N -o '%N %T %E' 2>&1) $(tail -3 "$dir/log/slurmd.log" "$dir/log/slurmctld.log" 2>/dev/null)"
  return 77
}

local_cluster_stop() {
  local dir=$1 pidfile pid
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  # Wait (up to 10 s each) so the next test's daemons do not find the old ones' ports or sockets taken.
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
}
