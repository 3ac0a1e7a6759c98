#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (munged, slurmctld, slurmd), as root.
# Installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf (only if
# absent or written by this script before), and waits until the node is idle. Idempotent:
# a cluster that is already up is left running.
#
# Environment: SLURM_START_TIMEOUT (seconds to wait for the node, default 60),
#              SLURM_PARTITION (partition name, default "local"),
#              SLURM_NODE_CPUS (job slots, default twice the cores: the test jobs are single-threaded
#              and spend much of their time starting Python and waiting for the scheduler's poll).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by hessdepth tests/cluster/start_slurm.sh"
TIMEOUT=${SLURM_START_TIMEOUT:-60}
PARTITION=${SLURM_PARTITION:-local}
NODE=$(hostname -s)

die() { echo "start_slurm.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "start_slurm.sh: installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# --- munge ------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0600 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge >/dev/null || die "munged started but munge/unmunge fails; see /var/log/munge/munged.log"
fi

# --- slurm.conf -------------------------------------------------------------
cpus=${SLURM_NODE_CPUS:-$(( 2 * $(nproc) ))}
mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 85 / 100 ))
[ "$mem_mb" -gt 20000 ] && mem_mb=20000
conf_text="$MARK
ClusterName=hessdepth
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"

if [ -e "$CONF" ] && ! head -n1 "$CONF" | grep -qxF "$MARK"; then
    die "$CONF exists and was not written by this script; refusing to overwrite a site configuration"
fi
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$conf_text" ]; then
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        die "slurm daemons are running with a different $CONF; run tests/cluster/stop_slurm.sh first"
    fi
    printf '%s\n' "$conf_text" > "$CONF"
fi
install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# --- daemons ----------------------------------------------------------------
# -c: start from a clean state (no jobs left over from an earlier run of this test cluster).
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || slurmd -c

deadline=$(( SECONDS + TIMEOUT ))
state=""
while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc) echo "start_slurm.sh: node $NODE is $state (partition $PARTITION)"; exit 0 ;;
        down*|drain*|drng*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}'); see /var/log/slurm/slurmctld.log and /var/log/slurm/slurmd.log"
