#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by start_slurm.sh: cancel all jobs and wait
# for them to end, shut down slurmctld and slurmd, stop munged. Idempotent.
#
# Environment: SLURM_STOP_TIMEOUT (seconds to wait for each stage, default 60).
set -euo pipefail

TIMEOUT=${SLURM_STOP_TIMEOUT:-60}
die() { echo "stop_slurm.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

wait_until() {  # wait_until DESCRIPTION COMMAND...: poll COMMAND until it succeeds
    local what=$1; shift
    local deadline=$(( SECONDS + TIMEOUT ))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || die "$what: not done after ${TIMEOUT}s"
        sleep 0.5
    done
}
no_jobs() { [ -z "$(squeue -h -o %i 2>/dev/null)" ]; }
not_running() { ! pgrep -x "$1" >/dev/null; }

if pgrep -x slurmctld >/dev/null; then
    # Jobs must finish while slurmctld still runs, or slurmd waits for their completion RPC.
    squeue -h -o %i | xargs -r scancel
    wait_until "cancel jobs" no_jobs
    scontrol shutdown
fi
wait_until "slurmctld exit" not_running slurmctld
# A slurmd without a controller does not get the shutdown request: stop it by its pid.
for pid in $(pgrep -x slurmd || true); do kill "$pid" 2>/dev/null || true; done
wait_until "slurmd exit" not_running slurmd

if pgrep -x munged >/dev/null; then
    munged --stop >/dev/null
fi
wait_until "munged exit" not_running munged
echo "stop_slurm.sh: slurm and munge stopped"
