#!/usr/bin/env bash
# A real single-node Slurm (munge + slurmctld + slurmd on 127.0.0.1) for Adjutant's tests.
#
#   tests/slurm/cluster.sh start   install (Debian packages, once) and start; waits until a job runs
#   tests/slurm/cluster.sh stop    cancel jobs, stop the daemons by their pid files
#   tests/slurm/cluster.sh status  exit 0 if the cluster answers
#
# Needs root (apt-get, daemons). Everything lives under $ADJUTANT_SLURM_DIR (default /var/tmp/adjutant-slurm).
# Recipe and traps: ../shared/notes/slurm-single-node.md.
set -euo pipefail

DIR=${ADJUTANT_SLURM_DIR:-/var/tmp/adjutant-slurm}
CONF=/etc/slurm/slurm.conf

log() { printf 'slurm-cluster: %s\n' "$*" >&2; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  log "installing slurmctld slurmd slurm-client munge"
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

alive() {  # pid file → running and not a zombie
  local pidfile=$1 pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/status" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status"
}

write_config() {
  local addr cpus mem flags=""
  addr=$(getent hosts "$(hostname)" | awk '{print $1; exit}' || true)
  if [[ "$addr" == 127.* ]]; then
    flags="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  else
    addr=127.0.0.1
  fi
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
  mkdir -p "$DIR"/{state,spool,log} /etc/slurm
  cat > "$CONF" <<CONF
ClusterName=adjutant
SlurmctldHost=localhost($addr)
$flags
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
EnforcePartLimits=ALL
MinJobAge=3600
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MailProg=/bin/true
MpiDefault=none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost NodeAddr=$addr NodeHostname=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --force
  fi
}

wait_ready() {
  local i state
  for i in $(seq 1 100); do
    state=$(timeout 5 sinfo -h -o %T 2>/dev/null | head -n1 || true)
    if [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ]; then break; fi
    sleep 0.2
  done
  [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ] || { log "node not ready ($state)"; return 1; }
  # The first job after a cold start is scheduled late: run a probe to the end.
  local probe
  probe=$(sbatch --parsable -o /dev/null -J adjutant-probe --wrap true)
  for i in $(seq 1 1200); do  # up to 120 s on a busy machine; returns as soon as the probe completed
    state=$(squeue -j "$probe" -h -t all -o %T 2>/dev/null || true)
    [ "$state" = COMPLETED ] && return 0
    sleep 0.1
  done
  log "probe job $probe did not complete (state: $state)"
  return 1
}

start() {
  if status 2>/dev/null; then log "already running"; return 0; fi
  install_packages
  write_config
  start_munge
  alive "$DIR/slurmctld.pid" || slurmctld -i
  alive "$DIR/slurmd.pid" || slurmd -N localhost
  wait_ready
  log "ready"
}

stop() {
  timeout 10 scancel --user=root --quiet 2>/dev/null || true
  local name pidfile pid
  for name in slurmd slurmctld; do
    pidfile="$DIR/$name.pid"
    if alive "$pidfile"; then
      pid=$(cat "$pidfile")
      if grep -q "$name" "/proc/$pid/comm"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do alive "$pidfile" || break; sleep 0.1; done
        alive "$pidfile" && kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  done
  log "stopped"
}

status() {
  command -v sinfo >/dev/null || return 1
  alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && timeout 5 sinfo -h -o %T >/dev/null 2>&1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
