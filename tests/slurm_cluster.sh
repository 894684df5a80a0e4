# slurm_cluster.sh: a real, private Slurm cluster for the Slurm tests (sourced, not run).
#
# slurm_cluster_start DIR starts munged, slurmctld and two slurmd "fake nodes" (n1, n2,
# both on this host, each with its own port, spool, pid file and TmpFS) from a
# slurm.conf written under DIR, exports SLURM_CONF so that sbatch/srun/squeue/sinfo
# talk to this cluster only, and waits until sinfo shows both nodes idle.
# slurm_cluster_stop (installed as an EXIT trap by start) cancels every job, stops the
# daemons it started by PID, and kills any process still running inside DIR (job steps
# that outlive slurmd; DIR is private to this test, so they can only be ours).
#
# Everything lives in DIR: munge key/socket/pid/log, Slurm state, spools, logs; ports
# are picked at random among free ones, so several tests can run clusters side by side.
# Nothing global is touched (/etc/munge, /etc/slurm, /run/munge stay as they are).
#
# Where the Slurm or munge programs are missing the caller is told to skip: the
# function exits with SLURM_SKIP_CODE (77, registered as ctest's SKIP_RETURN_CODE).

SLURM_SKIP_CODE=77
SLURM_CLUSTER_PIDS=()
SLURM_CLUSTER_DIR=""

slurm_cluster_log() { echo "slurm_cluster: $*" >&2; }

# A TCP port nobody listens on (checked with ss; a clash still fails loudly at start).
slurm_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}

slurm_cluster_dump_logs() {
    local f
    for f in "$SLURM_CLUSTER_DIR"/munged.log "$SLURM_CLUSTER_DIR"/slurmctld.log "$SLURM_CLUSTER_DIR"/slurmd-*.log; do
        [ -f "$f" ] || continue
        echo "---- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}

slurm_cluster_start() {
    SLURM_CLUSTER_DIR=$1
    local prog
    for prog in munged slurmctld slurmd sbatch srun sinfo squeue scancel scontrol; do
        if ! command -v "$prog" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$prog" ]; then
            echo "SKIP: $prog is not installed (apt-get install slurm-wlm munge; scripts/install-deps.sh)" >&2
            exit "$SLURM_SKIP_CODE"
        fi
    done
    if [ ! -f /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] && ! ls /usr/lib/*/slurm*/mpi_pmix*.so >/dev/null 2>&1; then
        echo "SKIP: Slurm's pmix plugin (mpi_pmix.so) is not installed" >&2
        exit "$SLURM_SKIP_CODE"
    fi
    PATH=$PATH:/usr/sbin
    local d=$SLURM_CLUSTER_DIR
    rm -rf "$d"
    mkdir -p "$d"
    d=$(cd "$d" && pwd -P)
    SLURM_CLUSTER_DIR=$d
    # munged insists that its key and socket directories are not writable by others.
    chmod 0755 "$d"
    mkdir -m 0700 "$d/munge"
    mkdir -p "$d/state" "$d/jobs"
    trap slurm_cluster_stop EXIT

    # munge: own key, socket, pid, seed and log under DIR.
    dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$d/munge/munge.key"
    local sock=$d/munge/munge.socket
    munged --force --socket="$sock" --key-file="$d/munge/munge.key" --pid-file="$d/munge/munged.pid" \
        --seed-file="$d/munge/munged.seed" --log-file="$d/munged.log" --foreground >/dev/null 2>&1 &
    SLURM_CLUSTER_PIDS+=($!)
    for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
    if [ ! -S "$sock" ]; then slurm_cluster_log "munged did not create $sock"; slurm_cluster_dump_logs; return 1; fi

    local ctld_port p1 p2
    ctld_port=$(slurm_free_port) && p1=$(slurm_free_port) && p2=$(slurm_free_port) || { slurm_cluster_log "no free port"; return 1; }
    local cpus
    cpus=$(nproc)
    cat >"$d/slurm.conf" <<EOF
# Written by tests/slurm_cluster.sh: a private two-node cluster on this host.
ClusterName=saevtest$$
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool-%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd-%n.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd-%n.log
TmpFS=$d/tmp-%n
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=2
InactiveLimit=0
SlurmdTimeout=30
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$p1 CPUs=$cpus RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$p2 CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    local n
    for n in n1 n2; do mkdir -p "$d/spool-$n" "$d/tmp-$n"; done
    export SLURM_CONF=$d/slurm.conf
    # Make sure no outer Slurm job environment leaks into ours.
    unset SLURM_JOB_ID SLURM_JOBID SLURM_STEP_ID SLURM_NTASKS SLURM_NNODES SLURM_ARRAY_TASK_ID

    slurmctld -D -i -f "$SLURM_CONF" >"$d/slurmctld.out" 2>&1 &
    SLURM_CLUSTER_PIDS+=($!)
    for n in n1 n2; do
        slurmd -D -N "$n" -f "$SLURM_CONF" >"$d/slurmd-$n.out" 2>&1 &
        SLURM_CLUSTER_PIDS+=($!)
    done
    # Up when both nodes report idle (usually about a second).
    local idle=0
    for _ in $(seq 1 300); do
        idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle$' || true)
        [ "$idle" = 2 ] && break
        sleep 0.1
    done
    if [ "$idle" != 2 ]; then
        slurm_cluster_log "nodes did not come up idle within 30 s:"
        sinfo -N 2>&1 >&2 || true
        slurm_cluster_dump_logs
        return 1
    fi
    slurm_cluster_log "up in $d (slurmctld port $ctld_port, nodes n1:$p1 n2:$p2)"
}

# Waits until job $1 (or array job) has left the queue; fails after $2 seconds (default 120).
slurm_wait_job() {
    local job=$1 limit=${2:-120} t=0
    while squeue -h -j "$job" 2>/dev/null | grep -q .; do
        sleep 0.2
        t=$((t + 1))
        if [ $t -gt $((limit * 5)) ]; then slurm_cluster_log "job $job still queued/running after ${limit}s"; squeue >&2; return 1; fi
    done
}

# "STATE EXIT_CODE" of a finished job from slurmctld's memory (no accounting database).
slurm_job_state() {
    scontrol -o show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*ExitCode=\([0-9:]*\).*/\1 \2/p' | head -n 1
}

slurm_cluster_stop() {
    local rc=$?
    [ -n "$SLURM_CLUSTER_DIR" ] || return $rc
    local d=$SLURM_CLUSTER_DIR
    if [ ${#SLURM_CLUSTER_PIDS[@]} -gt 0 ]; then
        # Jobs first, so that their steps end while slurmd is still there to end them.
        scancel --full --quiet -u "$(id -un)" 2>/dev/null || true
        for _ in $(seq 1 50); do squeue -h 2>/dev/null | grep -q . || break; sleep 0.1; done
        local pid i
        for ((i = ${#SLURM_CLUSTER_PIDS[@]} - 1; i >= 0; i--)); do
            pid=${SLURM_CLUSTER_PIDS[$i]}
            kill -TERM "$pid" 2>/dev/null || true
        done
        for pid in "${SLURM_CLUSTER_PIDS[@]}"; do
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
    fi
    # Job steps (slurmstepd and its tasks) detach from slurmd; a process whose environment
    # names this cluster's slurm.conf, or whose working directory is inside DIR, was
    # started by this cluster (DIR is private to this test).
    local p cwd
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
        cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || continue
        if [[ "$cwd" == "$d" || "$cwd" == "$d"/* ]] || { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$d/slurm.conf"; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    SLURM_CLUSTER_PIDS=()
    unset SLURM_CONF
    if [ "${SLURM_KEEP:-0}" != 1 ]; then rm -rf "$d"; fi
    SLURM_CLUSTER_DIR=""
    return $rc
}
