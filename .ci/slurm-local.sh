#!/usr/bin/env bash
# A real one-node SLURM cluster on loopback, for the SLURM tests (tests/test_slurm.py) and by hand.
#
#   .ci/slurm-local.sh install   apt-get the Debian packages (munge, slurmctld, slurmd, slurm-client) if missing
#   .ci/slurm-local.sh start     install if needed, start munged, slurmctld and slurmd, wait until the node is idle
#   .ci/slurm-local.sh status    exit 0 when all three daemons run and the node answers, print what runs
#   .ci/slurm-local.sh stop      cancel the local cluster's jobs, stop the daemons this script started, by PID
#
# Every command is idempotent. State, spool, logs and PID files live in $SLURM_LOCAL_DIR
# (default /tmp/slurm-local); the config goes to /etc/slurm/slurm.conf, where every SLURM
# client looks, and is never written over a config this script did not write.
# Exit codes: 0 ok, 1 failure, 3 this machine cannot run the cluster (not root, no apt-get, ...).
# Needs root: slurmd runs jobs as the submitting user, and munged's key belongs to user munge.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
CONF=/etc/slurm/slurm.conf
MARKER="# written by .ci/slurm-local.sh"
PARTITION=debug
PACKAGES=(munge slurmctld slurmd slurm-client)
START_TIMEOUT=${SLURM_LOCAL_START_TIMEOUT:-60}

say() { echo "slurm-local: $*"; }
unsupported() { echo "slurm-local: cannot run a local cluster here: $*" >&2; exit 3; }
die() { echo "slurm-local: $*" >&2; exit 1; }

alive() {  # alive <pidfile>: the PID in the file names a running process
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

munge_answers() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

installed() {
    command -v munged >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null
}

cmd_install() {
    if installed; then say "packages present"; return 0; fi
    [[ $(id -u) -eq 0 ]] || unsupported "installing ${PACKAGES[*]} needs root (run as root or install them yourself)"
    command -v apt-get >/dev/null || unsupported "no apt-get; install ${PACKAGES[*]} with your package manager"
    say "installing ${PACKAGES[*]} (apt-get, about 15 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$DIR.apt.log" 2>&1 \
        || die "apt-get install failed; see $DIR.apt.log"
}

write_config() {
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; this machine has its own SLURM set-up, use that"
    fi
    local node cpus sockets cores threads mem
    node=$(hostname -s)
    # The node's real shape, as slurmd sees it; memory a little under the real size, or the node drains.
    read -r cpus sockets cores threads mem < <(slurmd -C | awk '
        /^NodeName/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { print v["CPUs"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }')
    mem=$((mem * 9 / 10))
    mkdir -p "$DIR/state" "$DIR/spool" /etc/slurm
    cat >"$CONF.tmp" <<EOF
$MARKER (state in $DIR); .ci/slurm-local.sh stop leaves it for the next start.
ClusterName=local
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups in containers: track processes by parent PID, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct cannot answer, so Snakemake polls squeue; MinJobAge keeps finished jobs
# visible to squeue (and to the tests) for 10 minutes; jobcomp keeps one line per finished job.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that names no memory takes the whole node and jobs run one by one.
DefMemPerCPU=500
ReturnToService=2
KillWait=5
InactiveLimit=0
Waittime=0
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    if munge_answers; then return 0; fi
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$DIR/munged.pid"  # ours to stop; a munged found running is left alone
}

node_state() { sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n1; }

cmd_start() {
    [[ $(id -u) -eq 0 ]] || unsupported "slurmctld and slurmd as set up here need root"
    mkdir -p "$DIR"
    cmd_install
    if cmd_status >/dev/null 2>&1; then say "already running ($(node_state))"; return 0; fi
    write_config
    start_munge
    # -i: start from empty state, so a cluster killed mid-job comes back clean.
    alive "$DIR/slurmctld.pid" || slurmctld -i || die "slurmctld did not start; see $DIR/slurmctld.log"
    alive "$DIR/slurmd.pid" || slurmd || die "slurmd did not start; see $DIR/slurmd.log"
    local state waited=0
    while :; do
        state=$(node_state)
        case $state in
            idle|mixed|allocated) break ;;
            down*|drain*) scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true ;;
        esac
        ((waited < START_TIMEOUT)) || die "node not idle after ${START_TIMEOUT}s (state '${state:-none}'); see $DIR/slurmctld.log and $DIR/slurmd.log"
        sleep 1; waited=$((waited + 1))
    done
    say "running: partition $PARTITION, node $(hostname -s) $state after ${waited}s; logs in $DIR"
}

cmd_status() {
    local ok=0 name state
    # A munged this script did not start still serves the cluster; what counts is that it answers.
    if munge_answers; then echo "munged: answering"; else echo "munged: not answering"; ok=1; fi
    for name in slurmctld slurmd; do
        if alive "$DIR/$name.pid"; then echo "$name: pid $(cat "$DIR/$name.pid")"; else echo "$name: not running"; ok=1; fi
    done
    ((ok == 0)) || return 1
    state=$(node_state)
    echo "node: ${state:-no answer}"
    [[ -n $state ]]
}

stop_pid() {  # stop_pid <name>: TERM, wait up to 10 s, then KILL
    local file="$DIR/$1.pid" pid i
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill "$pid"
    for i in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    rm -f "$file"
    say "stopped $1 (pid $pid)"
}

cmd_stop() {
    if alive "$DIR/slurmctld.pid"; then
        # Jobs of this cluster only (it has no other users); their steps die with them.
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    fi
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid munged
}

case ${1:-} in
    install) mkdir -p "$(dirname "$DIR")"; cmd_install ;;
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *) echo "usage: $0 install|start|status|stop   (state in \$SLURM_LOCAL_DIR, default /tmp/slurm-local)" >&2; exit 2 ;;
esac
