#!/usr/bin/env bash
# Stop the daemons .ci/slurm/setup.sh started, by the pids it recorded (munged by its pid file).
set -uo pipefail
STATE=${SLURM_CI_STATE:-/var/lib/softpick-ci-slurm}
for name in slurmd-main slurmctld-main slurmdbd-main mariadb; do
    pidfile=$STATE/pids/$name
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
    rm -f "$pidfile"
done
if [[ -f /run/munge/munged.pid ]]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
fi
echo "SLURM CI daemons stopped"
