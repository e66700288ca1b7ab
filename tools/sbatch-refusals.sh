#!/bin/bash
# Record what Slurm's sbatch prints when a submission limit refuses a job.
#
# The shared test cluster (tools/slurm-cluster.sh) does not enforce
# accounting limits, and changing that would restart its controller under
# everybody's tests.  This script starts a second, private slurmctld for a
# moment instead: cluster "hpcdlim<pid>" on a free 127.0.0.1 port, registered
# in the slurmdbd of the cluster SLURM_CONF selects, with AccountingStorageEnforce=associations,
# limits,qos, no compute node (jobs stay pending), MaxJobCount=100 and
# for the MaxJobCount case 1.
# It then provokes each refusal once with the real sbatch and prints
#
#   === NAME (rc N)
#   <sbatch's stderr, verbatim>
#
# for: the QOS's MaxSubmitJobsPerUser, the association's MaxSubmitJobs, an
# invalid account, an invalid QOS and MaxJobCount (sbatch retries the last
# one for about two minutes before it gives up).  Everything it created
# (controller, cluster, account, QOS, jobs) is removed on exit, also on
# failure.  The texts are what tests/test_parsing.py holds (REFUSED), and
# tests/test_slurm_queries.py checks them against this script's output.
#
# Usage (root, test cluster up): bash tools/sbatch-refusals.sh [--quick]
#   --quick  skips the MaxJobCount case (the two-minute retry loop)
set -euo pipefail

QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
# names of this run only: two runs at once (or one killed before its
# clean-up) would otherwise collide in the shared slurmdbd
CLUSTER=hpcdlim$$
QOS=${CLUSTER}_qos
ACCOUNT=${CLUSTER}_acct
trap 'echo "sbatch-refusals.sh: line $LINENO failed (rc $?): $BASH_COMMAND" >&2' ERR
DIR=$(mktemp -d /tmp/hpcdlim.XXXXXX)
CONF=$DIR/slurm.conf
CTLD_PID=""
host=$(hostname -s)
free_port() {
    python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
CTLD_PORT=$(free_port)
# the accounting daemon of the cluster SLURM_CONF selects (sacctmgr below
# talks to it too): the default cluster's, or a multi-node instance's
BASE_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
DBD_HOST=$(sed -n 's/^AccountingStorageHost=//p' "$BASE_CONF" | head -n1)
DBD_PORT=$(sed -n 's/^AccountingStoragePort=//p' "$BASE_CONF" | head -n1)
SLURMD_PORT=$(free_port)

write_conf() {   # MAXJOBCOUNT
    cat >"$CONF" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=${DBD_HOST:-localhost}
AccountingStoragePort=${DBD_PORT:-6819}
AccountingStorageEnforce=associations,limits,qos
MaxJobCount=$1
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmctldLogFile=$DIR/slurmctld.log
NodeName=$host CPUs=1 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_ctld() {   # MAXJOBCOUNT: a fresh private controller (state cleared)
    rm -rf "$DIR/state" "$DIR/slurmctld.pid"
    mkdir -p "$DIR/state"
    write_conf "$1"
    SLURM_CONF=$CONF slurmctld -c -f "$CONF"
    for _ in $(seq 100); do
        CTLD_PID=$(cat "$DIR/slurmctld.pid" 2>/dev/null || true)
        [[ -n $CTLD_PID ]] && SLURM_CONF=$CONF scontrol ping 2>/dev/null \
            | grep -q UP && return 0
        sleep 0.1
    done
    echo "private slurmctld did not come up; log:" >&2
    tail -n 20 "$DIR/slurmctld.log" >&2
    return 1
}

stop_ctld() {   # only the controller this script started, by its PID
    [[ -n $CTLD_PID ]] || return 0
    SLURM_CONF=$CONF scancel --quiet --user=root >/dev/null 2>&1 || true
    sleep 1
    kill "$CTLD_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -d /proc/$CTLD_PID ]] || break
        [[ $(awk '{print $3}' "/proc/$CTLD_PID/stat" 2>/dev/null) == Z ]] \
            && break
        sleep 0.1
    done
    CTLD_PID=""
}

cleanup() {
    set +e
    stop_ctld
    sacctmgr -i delete user root account=$ACCOUNT cluster=$CLUSTER \
        >/dev/null 2>&1
    sacctmgr -i delete account $ACCOUNT cluster=$CLUSTER >/dev/null 2>&1
    sacctmgr -i delete cluster $CLUSTER >/dev/null 2>&1
    sacctmgr -i delete account $ACCOUNT >/dev/null 2>&1
    sacctmgr -i delete qos $QOS >/dev/null 2>&1
    rm -rf "$DIR"
}
trap cleanup EXIT

submit() {   # NAME sbatch-options...: print sbatch's stderr verbatim
    local name=$1 rc=0 err
    shift
    err=$(SLURM_CONF=$CONF sbatch --parsable --hold "$@" --wrap true \
          2>&1 >/dev/null) || rc=$?
    printf '=== %s (rc %d)\n%s\n' "$name" "$rc" "$err"
}

sacctmgr -i add cluster $CLUSTER >/dev/null
sacctmgr -i add qos $QOS MaxSubmitJobsPerUser=1 >/dev/null
sacctmgr -i add account $ACCOUNT cluster=$CLUSTER >/dev/null
sacctmgr -i add user root account=$ACCOUNT cluster=$CLUSTER \
    MaxSubmitJobs=1 >/dev/null
sacctmgr -i modify user root where cluster=$CLUSTER set qos+=$QOS \
    >/dev/null

start_ctld 100
SLURM_CONF=$CONF sbatch --parsable --hold --qos=$QOS --wrap true >/dev/null
submit QOSMaxSubmitJobPerUserLimit --qos=$QOS
SLURM_CONF=$CONF sbatch --parsable --hold --account=$ACCOUNT --wrap true \
    >/dev/null
submit AssocMaxSubmitJobLimit --account=$ACCOUNT
submit InvalidAccount --account=no_such_account
submit InvalidQOS --qos=no_such_qos
stop_ctld
if ((!QUICK)); then
    start_ctld 1
    SLURM_CONF=$CONF sbatch --parsable --hold --wrap true >/dev/null
    submit MaxJobCount
    stop_ctld
fi
