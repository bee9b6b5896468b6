#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost, with accounting, for CI (Debian bookworm, root).
#
#   bash .ci/slurm/setup.sh            # install if needed, write the configs, start the daemons
#   bash .ci/slurm/teardown.sh         # stop what this script started (by the pids it recorded)
#
# What runs: munged, MariaDB (accounting database), slurmdbd, slurmctld and slurmd from Debian's
# slurm-wlm 22.05. The cluster `softpick-ci` has one node (this machine) in two partitions, `cpu`
# and `gpu` (the latter has no GPUs: it only stands in for the profile's GPU partition so that the
# per-rule partition choice shows in sacct), and one account `softpick-ci` that the submitting
# user belongs to, so the executor plugin's account check and `sacct` behave as on a site.
# Time limits are enforced to the second: OverTimeLimit=0 and KillWait=5 (SIGTERM, then SIGKILL
# 5 s later). Containers have no usable cgroups here: processes are tracked by
# proctrack/linuxproc and memory is a scheduling quantity, not a hard limit.
#
# Settings (environment): SLURM_CI_STATE (state and logs, default /var/lib/softpick-ci-slurm),
# SLURM_CI_MEMORY_MB (memory the node offers to jobs, default 16000).
set -euo pipefail
STATE=${SLURM_CI_STATE:-/var/lib/softpick-ci-slurm}
MEMORY_MB=${SLURM_CI_MEMORY_MB:-16000}
CLUSTER=softpick-ci
ACCOUNT=softpick-ci
USER_NAME=$(id -un)
NODE=$(hostname -s)
ETC=/etc/slurm

if [[ $(id -u) != 0 ]]; then
    echo "setup.sh: must run as root (it installs packages and starts system daemons)" >&2
    exit 1
fi

# ---- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
        || ! command -v mariadbd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server mariadb-client
fi

mkdir -p "$STATE"/{log,spool/ctld,spool/d,pids}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$limit"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "setup.sh: $what did not come up within ${limit} s (logs in $STATE/log)" >&2
    exit 1
}

start_daemon() {  # start_daemon NAME COMMAND...: start in the background, record its pid
    local name=$1
    shift
    "$@" >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$STATE/pids/$name"
}

running() {  # running NAME: the daemon recorded under NAME is alive
    [[ -f $STATE/pids/$1 ]] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null
}

# ---- munge (authentication between the daemons and the clients)
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged  # daemonizes itself; its pid file is /run/munge/munged.pid
    wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# ---- MariaDB (slurmdbd's storage)
if ! mariadb -e 'SELECT 1' >/dev/null 2>&1; then
    install -d -o mysql -g mysql /run/mysqld
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
    start_daemon mariadb /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
        --innodb-buffer-pool-size=64M
    wait_for 60 MariaDB mariadb -e 'SELECT 1'
fi
mariadb <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'softpick-ci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ---- configuration
cat >"$ETC/slurmdbd.conf" <<EOF
# written by .ci/slurm/setup.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=softpick-ci
StorageLoc=slurm_acct_db
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/pids/slurmdbd.pid
EOF
chmod 600 "$ETC/slurmdbd.conf"

# The node line as slurmd itself sees the hardware, with the memory offered to jobs capped.
hardware=$(slurmd -C | head -1 | sed -E "s/RealMemory=[0-9]+/RealMemory=$MEMORY_MB/")
cat >"$ETC/slurm.conf" <<EOF
# written by .ci/slurm/setup.sh: one-node CI cluster on localhost
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Time limits as a site enforces them, without grace: killed at the limit, SIGKILL 5 s after SIGTERM.
OverTimeLimit=0
KillWait=5
# Accounting through slurmdbd; jobs must name a known account (as on most sites).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
JobCompType=jobcomp/none
MinJobAge=600
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/pids/slurmctld.pid
SlurmdPidFile=$STATE/pids/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
$hardware State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF

# ---- daemons
if ! running slurmdbd-main; then
    start_daemon slurmdbd-main /usr/sbin/slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster
fi
sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null || true
sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" Description="CI runs" Organization=softpick-repro >/dev/null || true
sacctmgr -i -Q add user "$USER_NAME" Account="$ACCOUNT" Cluster="$CLUSTER" DefaultAccount="$ACCOUNT" >/dev/null || true
if ! running slurmctld-main; then
    start_daemon slurmctld-main /usr/sbin/slurmctld -D -c   # -c: no jobs left over from an earlier cluster
fi
if ! running slurmd-main; then
    start_daemon slurmd-main /usr/sbin/slurmd -D
fi
wait_for 60 "the node $NODE" sh -c "sinfo -h -n $NODE -o %t | grep -Eq '^(idle|mix|alloc)'"
echo "SLURM cluster $CLUSTER up: node $NODE ($(sinfo -h -n "$NODE" -o '%c CPUs, %m MB')), partitions $(sinfo -h -o %P | sort -u | tr '\n' ' ')account $ACCOUNT (user $USER_NAME)"
