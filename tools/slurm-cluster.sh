#!/usr/bin/env bash
# Slurm 22.05 test cluster on this machine (Debian 12 packages, no systemd).
#
#   tools/slurm-cluster.sh [--instance NAME] up [--nodes N]
#   tools/slurm-cluster.sh [--instance NAME] down [--purge]
#   tools/slurm-cluster.sh [--instance NAME] status
#   tools/slurm-cluster.sh [--instance NAME] env             prints SLURM_CONF=...
#   tools/slurm-cluster.sh [--instance NAME] kill-slurmd NODE   SIGKILL one node's slurmd
#   tools/slurm-cluster.sh [--instance NAME] start-slurmd NODE  start it again
#   tools/slurm-cluster.sh [--instance NAME] stop-daemon NAME   stop slurmctld or slurmdbd
#   tools/slurm-cluster.sh [--instance NAME] start-daemon NAME  start it again, wait until it answers
#         (by the PID this script recorded, never by name; for outage tests)
#
# up      install (if needed), configure and start; a no-op if already up
# down    cancel the instance's jobs, stop the daemons this script started,
#         remove the namespaces and links it made; --purge (named instances
#         only) also deletes their configuration, state, logs and database
# status  daemon state and sinfo; exit 0 only if usable
#
# Without --instance (and without HPCDATA_SLURM_INSTANCE or a SLURM_CONF
# that names an instance) this is the default cluster: /etc/slurm, default
# ports, and with one node (the default) the local host itself as the node,
# bound to 127.0.0.1.  With --nodes N > 1, or for any named instance, the
# controller and N nodes each run in their own network and UTS namespace on
# a private bridge (see tools/slurm-netns.sh); a named instance has its own
# config dir (/etc/slurm-NAME), state, spool and log dirs, ClusterName NAME
# and MariaDB server, so it runs beside the default cluster.  Clients select
# it with SLURM_CONF=/etc/slurm-NAME/slurm.conf (`env` prints it).
#
# Environment:
#   HPCDATA_SLURM_INSTANCE=NAME    as --instance
#   HPCDATA_SLURM_NODES=N          as --nodes (default: the instance's current count, else 1)
#   HPCDATA_SLURM_ACCOUNTING=1|0   MariaDB + slurmdbd so that sacct works (default 1)
#   HPCDATA_SLURM_MINJOBAGE=N      seconds a finished job stays in slurmctld (default 300)
#   HPCDATA_SLURM_CPUS=N           CPUs advertised per node (default 8)
#   HPCDATA_SLURM_MAXJOBCOUNT=N    MaxJobCount (default 20000)
#   HPCDATA_SLURM_SUBNET=10.X.Y    private /24 of a multi-node instance (default 10.250.K)
#   HPCDATA_SLURM_FIRSTJOBID=N     FirstJobId of a multi-node instance (applies to a fresh state dir)
#
# Must run as root.  Only daemons started by this script are ever signalled; their
# PIDs (plus start times, to survive PID reuse) are recorded under $STATE_DIR/pids.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { printf '[slurm-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments

usage() {
    echo "usage: $0 [--instance NAME] up [--nodes N] | down [--purge] | status | env |" \
        "kill-slurmd NODE | start-slurmd NODE | stop-daemon NAME | start-daemon NAME" >&2
    exit 2
}

INSTANCE=${HPCDATA_SLURM_INSTANCE-}
INSTANCE_SET=${HPCDATA_SLURM_INSTANCE+1}
CMD=""
NODES_OPT=${HPCDATA_SLURM_NODES-}
PURGE=0
NODE_ARG=""
while (($#)); do
    case $1 in
        --instance) (($# >= 2)) || usage; INSTANCE=$2; INSTANCE_SET=1; shift 2 ;;
        --instance=*) INSTANCE=${1#*=}; INSTANCE_SET=1; shift ;;
        --nodes) (($# >= 2)) || usage; NODES_OPT=$2; shift 2 ;;
        --nodes=*) NODES_OPT=${1#*=}; shift ;;
        --purge) PURGE=1; shift ;;
        up|down|status|env|kill-slurmd|start-slurmd|stop-daemon|start-daemon)
            [[ -z $CMD ]] || usage
            CMD=$1; shift
            if [[ $CMD == *-slurmd || $CMD == *-daemon ]]; then
                (($#)) || usage; NODE_ARG=$1; shift
            fi ;;
        *) usage ;;
    esac
done
[[ -n $CMD ]] || usage

if [[ -z $INSTANCE_SET && -n ${SLURM_CONF-} ]]; then
    # a client environment selects the instance it points at
    if [[ $SLURM_CONF =~ ^/etc/slurm-([a-z][a-z0-9]*)/slurm\.conf$ ]]; then
        INSTANCE=${BASH_REMATCH[1]}
    elif [[ $SLURM_CONF != /etc/slurm/slurm.conf ]]; then
        die "SLURM_CONF=$SLURM_CONF is not a cluster of this script; unset it or pass --instance"
    fi
fi
[[ -z $INSTANCE || $INSTANCE =~ ^[a-z][a-z0-9]{0,7}$ ]] \
    || die "instance name must be 1-8 lowercase letters/digits starting with a letter, got '$INSTANCE'"

TAG=${INSTANCE:-hpcdata}
CLUSTER=$TAG
if [[ -z $INSTANCE ]]; then
    CONF_DIR=/etc/slurm STATE_DIR=/run/hpcdata-slurm LOG_DIR=/var/log/slurm
    LIB_DIR=/var/lib/slurm MYSQL_DATADIR=/var/lib/mysql
else
    CONF_DIR=/etc/slurm-$INSTANCE STATE_DIR=/run/hpcdata-slurm-$INSTANCE
    LOG_DIR=/var/log/slurm-$INSTANCE LIB_DIR=/var/lib/slurm-$INSTANCE
    MYSQL_DATADIR=/var/lib/mysql-$INSTANCE
fi
export SLURM_CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
PID_DIR=$STATE_DIR/pids
CTLD_STATE=$LIB_DIR/slurmctld
SLURMD_SPOOL=$LIB_DIR/slurmd
MUNGE_KEY=/etc/munge/munge.key
MARIADB_LOG=$LOG_DIR/mariadb.log
LAYOUT_FILE=$STATE_DIR/layout

ACCOUNTING=${HPCDATA_SLURM_ACCOUNTING:-1}
MINJOBAGE=${HPCDATA_SLURM_MINJOBAGE:-300}
NCPUS=${HPCDATA_SLURM_CPUS:-8}
MAXJOBCOUNT=${HPCDATA_SLURM_MAXJOBCOUNT:-20000}

case $ACCOUNTING in 0|1) ;; *) die "HPCDATA_SLURM_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'";; esac
[[ $MINJOBAGE =~ ^[0-9]+$ ]] || die "HPCDATA_SLURM_MINJOBAGE must be an integer, got '$MINJOBAGE'"
[[ $NCPUS =~ ^[1-9][0-9]*$ ]] || die "HPCDATA_SLURM_CPUS must be a positive integer, got '$NCPUS'"
[[ $MAXJOBCOUNT =~ ^[1-9][0-9]*$ ]] || die "HPCDATA_SLURM_MAXJOBCOUNT must be a positive integer, got '$MAXJOBCOUNT'"
FIRSTJOBID=${HPCDATA_SLURM_FIRSTJOBID-}
[[ -z $FIRSTJOBID || $FIRSTJOBID =~ ^[1-9][0-9]*$ ]] || die "HPCDATA_SLURM_FIRSTJOBID must be a positive integer, got '$FIRSTJOBID'"

# the node count the instance is configured with (multi-node configs carry a marker)
configured_nodes() {
    local n
    n=$(sed -n 's/^# hpcdata-cluster: nodes=\([0-9]*\).*/\1/p' "$SLURM_CONF" 2>/dev/null | head -n1)
    printf '%s' "${n:-1}"
}
NODES=${NODES_OPT:-$(configured_nodes)}
[[ $NODES =~ ^[1-9][0-9]*$ ]] && ((NODES <= 64)) || die "--nodes must be 1..64, got '$NODES'"

# layout: "local" = the default cluster with one node (this host, 127.0.0.1);
# "netns" = controller and nodes in namespaces on a private bridge
if [[ -z $INSTANCE && $NODES == 1 ]]; then LAYOUT=local; else LAYOUT=netns; fi
if [[ $CMD != up && -f $LAYOUT_FILE ]]; then
    # act on what runs, not on what the options would make
    read -r LAYOUT NODES <"$LAYOUT_FILE" || true
fi

K=$(( $(printf '%s' "$TAG" | cksum | cut -d' ' -f1) % 200 + 20 ))
SUBNET=${HPCDATA_SLURM_SUBNET:-10.250.$K}
[[ $SUBNET =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "HPCDATA_SLURM_SUBNET must look like 10.X.Y, got '$SUBNET'"
CTL_HOST=slurmctl
CTL_ADDR=$SUBNET.2
NS_PREFIX=hpc-$TAG
BRIDGE=hpc-${TAG:0:11}
VETH_PREFIX=hv$K
UTS_DIR=$STATE_DIR/uts
NET_RECORD=$STATE_DIR/net
if [[ $LAYOUT == netns ]]; then
    MYSQL_RUN=$STATE_DIR/mysqld
    # the controller's namespaces: mariadbd, slurmdbd and slurmctld run there
    CTL=(nsenter "--net=/run/netns/$NS_PREFIX-ctl" "--uts=$UTS_DIR/$CTL_HOST" --)
else
    MYSQL_RUN=/run/mysqld
    CTL=()
fi
MYSQL_SOCK=$MYSQL_RUN/mysqld.sock

SLURM_PKGS=(slurmctld slurmd slurm-client munge)
ACCT_PKGS=(mariadb-server slurmdbd)
NETNS_PKGS=(iproute2)

T0=${EPOCHREALTIME/[.,]/}
say() {
    local ms=$(( (${EPOCHREALTIME/[.,]/} - T0) / 1000 ))
    printf '[slurm-cluster%s %d.%03ds] %s\n' "${INSTANCE:+:$INSTANCE}" $((ms / 1000)) $((ms % 1000)) "$*" >&2
}

# ---------------------------------------------------------------- process helpers

# proc_state PID -> one-letter state from /proc/PID/stat (empty if gone)
proc_state() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }            # comm may contain spaces/parens; state follows the last ')'
    printf '%s' "${stat%% *}"
}

# proc_starttime PID -> field 22 of /proc/PID/stat
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    # after the ')' the fields start at 3 (state); starttime is field 22 -> index 19
    local -a f
    read -r -a f <<<"$stat"
    printf '%s' "${f[19]}"
}

# alive PID COMM: running (not a zombie, not gone) and /proc/PID/comm matches
alive() {
    local pid=$1 comm=$2 st c
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    st=$(proc_state "$pid")
    [[ -n $st && $st != Z && $st != X ]] || return 1
    c=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $c == "$comm" ]]
}

# starting PID COMM: PID, which this script just launched (through bash,
# setsid and nsenter, each exec'ing the next), is alive and becoming or
# being COMM (under load the first check can come before the last exec)
starting() {
    local st c
    st=$(proc_state "$1")
    [[ -n $st && $st != Z && $st != X ]] || return 1
    c=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
    [[ $c == "$2" || $c == bash || $c == setsid || $c == nsenter ]]
}

# comm_of NAME: the process name of a recorded daemon (slurmd-node2 -> slurmd)
comm_of() { printf '%s' "${1%%-node*}"; }

# record NAME PID: remember that this script started NAME as PID
record() {
    mkdir -p "$PID_DIR"
    printf '%s %s\n' "$2" "$(proc_starttime "$2")" >"$PID_DIR/$1"
}

# ours NAME -> prints PID if NAME was started by this script and still runs
ours() {
    local f=$PID_DIR/$1 pid start comm
    comm=$(comm_of "$1")
    [[ -f $f ]] || return 1
    read -r pid start <"$f" || return 1
    if alive "$pid" "$comm" && [[ $(proc_starttime "$pid") == "$start" ]]; then
        printf '%s' "$pid"
        return 0
    fi
    rm -f "$f"
    return 1
}

SELF_NET=$(readlink /proc/self/ns/net 2>/dev/null || true)

# any_running COMM -> PIDs (not zombies) of processes called COMM in this
# host's network namespace (a multi-node instance's daemons live elsewhere)
any_running() {
    local d pid out=()
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [[ $(cat "$d/comm" 2>/dev/null) == "$1" ]] || continue
        [[ $(readlink "$d/ns/net" 2>/dev/null) == "$SELF_NET" ]] || continue
        alive "$pid" "$1" && out+=("$pid")
    done
    ((${#out[@]})) && printf '%s\n' "${out[@]}"
    return 0
}

# pid_from_file FILE COMM -> PID in FILE if alive with COMM
pid_from_file() {
    local pid
    [[ -r $1 ]] || return 1
    read -r pid <"$1" || return 1
    alive "$pid" "$2" || return 1
    printf '%s' "$pid"
}

# stop NAME TIMEOUT [SIGNAL]: SIGTERM (or SIGNAL) our NAME, SIGKILL after TIMEOUT seconds
stop() {
    local name=$1 timeout=$2 sig=${3:-TERM} pid i comm
    comm=$(comm_of "$name")
    pid=$(ours "$name") || return 0
    say "stopping $name (pid $pid${3:+, SIG$sig})"
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        alive "$pid" "$comm" || break
        sleep 0.1
    done
    if alive "$pid" "$comm"; then
        say "$name (pid $pid) ignored SIG$sig for ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do alive "$pid" "$comm" || break; sleep 0.1; done
        alive "$pid" "$comm" && die "$name (pid $pid) survived SIGKILL"
    fi
    rm -f "$PID_DIR/$name"
}

# wait_for SECONDS DESCRIPTION LOGFILE COMMAND...: poll COMMAND every 0.1 s
wait_for() {
    local secs=$1 what=$2 log=$3 i
    shift 3
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    [[ -f $log ]] && { echo "--- last lines of $log:" >&2; tail -n 15 "$log" >&2; }
    die "timed out after ${secs}s waiting for $what (see $log)"
}

# shellcheck source=tools/slurm-netns.sh
source "$HERE/slurm-netns.sh"

# ---------------------------------------------------------------- checks

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
mariadb_ok() { mariadb-admin --no-defaults --socket="$MYSQL_SOCK" --connect-timeout=2 ping >/dev/null 2>&1; }
dbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
cluster_registered() { sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; }

# node names of the configuration, one per line
node_names() { sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$SLURM_CONF" 2>/dev/null; }
node_state() { sinfo -h -n "$1" -o %T 2>/dev/null | head -n1 | tr -cd 'a-z'; }
node_usable() {
    case $(node_state "$1") in idle|mixed|allocated|completing|planned) return 0;; *) return 1;; esac
}

pkgs_installed() {
    local p s
    for p in "$@"; do
        s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) || return 1
        [[ $s == installed ]] || return 1
    done
}

# ---------------------------------------------------------------- install

install_pkgs() {
    local pkgs=("${SLURM_PKGS[@]}")
    ((ACCOUNTING)) && pkgs+=("${ACCT_PKGS[@]}")
    [[ $LAYOUT == netns ]] && pkgs+=("${NETNS_PKGS[@]}")
    pkgs_installed "${pkgs[@]}" && return 0
    say "installing ${pkgs[*]}"
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # keep the maintainer scripts from starting daemons through /etc/init.d
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)
    local candidates_ok=1 p
    for p in "${pkgs[@]}"; do
        apt-cache show "$p" >/dev/null 2>&1 || { candidates_ok=0; break; }
    done
    if ((!candidates_ok)); then
        say "apt-get update (package lists lack ${p})"
        "${apt[@]}" update >&2
    fi
    if ! "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >&2; then
        say "install failed; retrying after apt-get update"
        "${apt[@]}" update >&2
        "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >&2
    fi
    if ((made_policy)); then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    pkgs_installed "${pkgs[@]}" || die "packages still missing after apt-get install: ${pkgs[*]}"
}

# ---------------------------------------------------------------- configuration

CONF_CHANGED=0
DBD_CONF_CHANGED=0

# put_file PATH MODE CONTENT -> replaces PATH only if the content differs; returns 0 if changed
put_file() {
    local path=$1 mode=$2 content=$3
    if [[ -f $path ]] && [[ $(cat "$path") == "$content" ]]; then
        chmod "$mode" "$path"
        return 1
    fi
    local tmp
    tmp=$(mktemp "$path.XXXXXX")
    chmod "$mode" "$tmp"
    printf '%s\n' "$content" >"$tmp"
    mv -f "$tmp" "$path"
    return 0
}

# the plugin, accounting and scheduler lines both layouts' slurm.conf share:
# plugins_conf ACCOUNTING_TYPE ACCOUNTING_HOST [COMMENT on the gather rate]
plugins_conf() {
    cat <<EOF
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobCompType=jobcomp/none
AccountingStorageType=$1
AccountingStorageHost=$2
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
${3:+$3
}JobAcctGatherFrequency=task=1
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
EOF
}

# slurm.conf of the default single-node cluster (unchanged since 0.1.0)
local_conf() {
    local host probe node mem acct_type=$1
    host=$(hostname -s)
    probe=$(slurmd -C 2>/dev/null | head -n1) || true
    node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$probe")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")
    [[ -n $node ]] || die "could not parse 'slurmd -C' output: $probe"
    [[ -n $mem ]] || mem=1000
    [[ $node == "$host" ]] || say "warning: slurmd -C reports NodeName=$node but hostname -s is $host"
    cat <<EOF
# Generated by tools/slurm-cluster.sh -- edits are overwritten by the next 'up'.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# bind daemons to the address of the host name (127.0.0.1), not to all interfaces
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
EOF
    plugins_conf "$acct_type" localhost "# sample every second: with the default 30 s short test jobs never get MaxRSS"
    cat <<EOF
ReturnToService=2
MaxJobCount=$MAXJOBCOUNT
MinJobAge=$MINJOBAGE
KillWait=5
MailProg=/bin/true
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$node CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 RealMemory=$mem NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=other Nodes=ALL Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

# slurm.conf of a multi-node instance: controller and nodes in namespaces
netns_conf() {
    local acct_type=$1 mem i
    # advertised, not checked (config_overrides); the same on every machine
    mem=$((NCPUS * 1000))
    cat <<EOF
# Generated by tools/slurm-cluster.sh -- edits are overwritten by the next 'up'.
# hpcdata-cluster: nodes=$NODES layout=netns subnet=$SUBNET.0/24
ClusterName=$CLUSTER
SlurmctldHost=$CTL_HOST($CTL_ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# every daemon runs in its own network namespace on a private bridge, so
# binding to any address there reaches only that bridge
EOF
    plugins_conf "$acct_type" "$CTL_ADDR"
    cat <<EOF
# real failure states on demand: a node whose slurmd stops answering is
# DOWN within ~SlurmdTimeout seconds and its jobs end NODE_FAIL; a node
# that registers again returns to service by itself
SlurmdTimeout=10
ReturnToService=2
# preemption by partition priority: "high" preempts "low" (requeue) and
# "lowcancel" (cancel); debug/other/short jobs are never preempted
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
MaxJobCount=$MAXJOBCOUNT
${FIRSTJOBID:+FirstJobId=$FIRSTJOBID
}MinJobAge=$MINJOBAGE
KillWait=5
MailProg=/bin/true
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL/%n
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
EOF
    for ((i = 1; i <= NODES; i++)); do
        echo "NodeName=node$i NodeAddr=$SUBNET.$((10 + i)) CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN"
    done
    cat <<EOF
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=OFF
PartitionName=other Nodes=ALL Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=OFF
PartitionName=low Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=REQUEUE
PartitionName=lowcancel Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=CANCEL
PartitionName=high Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=10 PreemptMode=OFF
PartitionName=short Nodes=ALL MaxTime=1 State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=OFF
EOF
}

dbd_conf() {
    local pw=$1 host=localhost addr=127.0.0.1 storage=localhost comm
    comm="# listen on the address of the host name (127.0.0.1) instead of 0.0.0.0
CommunicationParameters=NoInAddrAny"
    if [[ $LAYOUT == netns ]]; then
        host=$CTL_HOST addr=$CTL_ADDR storage=127.0.0.1
        comm="# inside the controller's network namespace: reachable only on the bridge"
    fi
    cat <<EOF
# Generated by tools/slurm-cluster.sh -- edits are overwritten by the next 'up'.
AuthType=auth/munge
DbdHost=$host
DbdAddr=$addr
DbdPort=6819
$comm
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$STATE_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=$storage
StoragePort=3306
StorageUser=slurm
StoragePass=$pw
StorageLoc=slurm_acct_db
EOF
}

write_configs() {
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$PID_DIR" "$CTLD_STATE" "$SLURMD_SPOOL"
    local acct_type=accounting_storage/none conf i
    ((ACCOUNTING)) && acct_type=accounting_storage/slurmdbd
    if [[ $LAYOUT == netns ]]; then
        conf=$(netns_conf "$acct_type")
        for ((i = 1; i <= NODES; i++)); do mkdir -p "$SLURMD_SPOOL/node$i"; done
    else
        conf=$(local_conf "$acct_type")
    fi
    if put_file "$SLURM_CONF" 644 "$conf"; then
        CONF_CHANGED=1
        say "wrote $SLURM_CONF"
    fi
    if ((ACCOUNTING)); then
        local pw=""
        [[ -f $DBD_CONF ]] && pw=$(sed -n 's/^StoragePass=//p' "$DBD_CONF" | head -n1)
        [[ -n $pw ]] || pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
        DBD_PASS=$pw
        # slurmdbd refuses a config readable by group/others
        if put_file "$DBD_CONF" 600 "$(dbd_conf "$pw")"; then
            DBD_CONF_CHANGED=1
            say "wrote $DBD_CONF"
        fi
        chown root:root "$DBD_CONF"
    fi
}

# ---------------------------------------------------------------- daemons

start_munge() {
    if munge_ok; then return 0; fi
    local pid
    if pid=$(any_running munged | head -n1) && [[ -n $pid ]]; then
        die "munged (pid $pid) runs but does not answer 'munge -n | unmunge'; see /var/log/munge/munged.log"
    fi
    [[ -s $MUNGE_KEY ]] || { say "creating $MUNGE_KEY"; mungekey --create --keyfile="$MUNGE_KEY"; }
    chown munge:munge "$MUNGE_KEY"
    chmod 600 "$MUNGE_KEY"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    # munged insists on owning its log file
    [[ -e /var/log/munge/munged.log ]] && chown munge:munge /var/log/munge/munged.log
    say "starting munged"
    # start-up errors go to stderr (captured in the state dir), the rest to munged.log
    if ! setsid runuser -u munge -- /usr/sbin/munged 9>&- </dev/null >"$STATE_DIR/munged.stderr" 2>&1; then
        cat "$STATE_DIR/munged.stderr" >&2
        die "munged failed to start (see $STATE_DIR/munged.stderr and /var/log/munge/munged.log)"
    fi
    wait_for 30 "munged" /var/log/munge/munged.log munge_ok
    pid=$(pid_from_file /run/munge/munged.pid munged) || die "munged answers but /run/munge/munged.pid is stale"
    record munged "$pid"
}

start_mariadb() {
    if [[ $LAYOUT == local ]] && mariadb_ok; then return 0; fi
    if [[ $LAYOUT == netns ]] && ours mariadbd >/dev/null && mariadb_ok; then return 0; fi
    local pid defaults=()
    if [[ $LAYOUT == local ]]; then
        if pid=$(any_running mariadbd | head -n1) && [[ -n $pid ]]; then
            die "mariadbd (pid $pid) runs but does not answer 'mariadb-admin ping'; see $MARIADB_LOG"
        fi
    else
        # a server of its own: no /etc/mysql settings, its own socket and datadir
        defaults=(--no-defaults --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci)
        stop mariadbd 60
    fi
    install -d -o mysql -g mysql -m 0755 "$MYSQL_RUN"
    if [[ ! -d $MYSQL_DATADIR/mysql ]]; then
        say "initialising $MYSQL_DATADIR"
        install -d -o mysql -g mysql -m 0755 "$MYSQL_DATADIR"
        mariadb-install-db "${defaults[@]:0:1}" --user=mysql --datadir="$MYSQL_DATADIR" >>"$MARIADB_LOG" 2>&1 \
            || die "mariadb-install-db failed (see $MARIADB_LOG)"
    fi
    say "starting mariadbd"
    setsid "${CTL[@]}" /usr/sbin/mariadbd "${defaults[@]}" --user=mysql --datadir="$MYSQL_DATADIR" \
        --pid-file="$MYSQL_RUN/mysqld.pid" --socket="$MYSQL_SOCK" \
        --bind-address=127.0.0.1 --port=3306 --skip-name-resolve \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        9>&- </dev/null >>"$MARIADB_LOG" 2>&1 &
    pid=$!
    local i
    for ((i = 0; i < 600; i++)); do
        mariadb_ok && break
        starting "$pid" mariadbd || { tail -n 15 "$MARIADB_LOG" >&2; die "mariadbd exited during start-up (see $MARIADB_LOG)"; }
        sleep 0.1
    done
    mariadb_ok || { tail -n 15 "$MARIADB_LOG" >&2; die "timed out after 60s waiting for mariadbd (see $MARIADB_LOG)"; }
    record mariadbd "$pid"
}

setup_database() {
    # slurmdbd reaches a local-layout server through its socket (localhost),
    # a namespaced one over TCP on the controller's own loopback
    local who="'slurm'@'localhost'"
    [[ $LAYOUT == netns ]] && who="'slurm'@'127.0.0.1'"
    # start-daemon runs without write_configs: the password is in the config
    [[ -n ${DBD_PASS:-} ]] || DBD_PASS=$(sed -n 's/^StoragePass=//p' "$DBD_CONF" | head -n1)
    [[ -n $DBD_PASS ]] || die "no StoragePass in $DBD_CONF; run up first"
    mariadb --no-defaults --socket="$MYSQL_SOCK" -u root <<EOF || die "creating the slurm database/user failed (see $MARIADB_LOG)"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS $who IDENTIFIED BY '$DBD_PASS';
ALTER USER $who IDENTIFIED BY '$DBD_PASS';
GRANT ALL ON slurm_acct_db.* TO $who;
EOF
}

# A daemon this script did not start (local layout only): reuse it if it
# answers (return 0), refuse if it runs but does not answer, return 1 if none runs.
reuse_foreign() {   # name check
    local name=$1 check=$2 pid
    [[ $LAYOUT == local ]] || return 1
    pid=$(any_running "$name" | head -n1) && [[ -n $pid ]] || return 1
    if "$check"; then
        say "reusing $name pid $pid (not started by this script; config changes not applied)"
        return 0
    fi
    die "$name (pid $pid) not started by this script runs but does not answer; stop it first"
}

# launch NAME CHECK WHAT PIDFILE LOG PREFIX...: start a Slurm daemon (it
# daemonises) with PREFIX (namespaces), wait until CHECK succeeds, record it
launch() {
    local name=$1 check=$2 what=$3 pidfile=$4 log=$5 pid comm
    shift 5
    comm=$(comm_of "$name")
    say "starting $name"
    setsid "$@" "$comm" 9>&- </dev/null >>"$log" 2>&1 \
        || die "$name failed to start (see $log)"
    wait_for 60 "$what" "$log" "$check"
    pid=$(pid_from_file "$pidfile" "$comm") || die "$name answers but its pid file $pidfile is stale"
    record "$name" "$pid"
}

start_slurmdbd() {
    local pid
    if pid=$(ours slurmdbd); then
        if ((DBD_CONF_CHANGED)); then
            say "slurmdbd.conf changed, restarting slurmdbd"
            stop slurmdbd 30
        else
            # fast path: one sacctmgr call proves slurmdbd answers and the cluster exists
            cluster_registered && { CLUSTER_OK=1; return 0; }
            wait_for 30 "slurmdbd to answer" "$LOG_DIR/slurmdbd.log" dbd_ok
            return 0
        fi
    elif reuse_foreign slurmdbd dbd_ok; then
        return 0
    fi
    setup_database
    launch slurmdbd dbd_ok "slurmdbd to answer sacctmgr" "$STATE_DIR/slurmdbd.pid" \
        "$LOG_DIR/slurmdbd.log" "${CTL[@]}"
}

CLUSTER_OK=0
register_cluster() {
    ((CLUSTER_OK)) && return 0
    cluster_registered && return 0
    say "registering cluster $CLUSTER in accounting"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed (see $LOG_DIR/slurmdbd.log)"
}

check_state_dir() {
    local f=$CTLD_STATE/clustername
    if [[ -f $f ]] && [[ $(cat "$f") != "$CLUSTER" ]]; then
        say "$CTLD_STATE belongs to cluster '$(cat "$f")', wiping it (job ids restart at 1)"
        find "$CTLD_STATE" -mindepth 1 -delete
    fi
}

# the slurmd daemons of this layout: "name hostname" per line
slurmd_names() {
    if [[ $LAYOUT == local ]]; then
        printf 'slurmd %s\n' "$(hostname -s)"
    else
        local i
        for ((i = 1; i <= NODES; i++)); do printf 'slurmd-node%d node%d\n' "$i" "$i"; done
    fi
}

stop_all_slurmd() {
    local name hn
    while read -r name hn; do stop "$name" 30; done < <(slurmd_names)
}

start_slurmctld() {
    local pid
    if pid=$(ours slurmctld); then
        if ((CONF_CHANGED)); then
            say "slurm.conf changed, restarting slurmctld and slurmd"
            stop_all_slurmd
            stop slurmctld 30
        else
            wait_for 60 "slurmctld to answer 'scontrol ping'" "$LOG_DIR/slurmctld.log" ctld_ok
            return 0
        fi
    elif reuse_foreign slurmctld ctld_ok; then
        return 0
    fi
    check_state_dir
    launch slurmctld ctld_ok "slurmctld to answer 'scontrol ping'" "$STATE_DIR/slurmctld.pid" \
        "$LOG_DIR/slurmctld.log" "${CTL[@]}"
}

# start_slurmd NAME HOSTNAME: one node's slurmd (in its namespaces)
start_slurmd() {
    local name=$1 hn=$2 pid prefix=() pidfile=$STATE_DIR/slurmd.pid log=$LOG_DIR/slurmd.log
    if [[ $LAYOUT == netns ]]; then
        prefix=(nsenter "--net=/run/netns/$NS_PREFIX-$hn" "--uts=$UTS_DIR/$hn" --)
        pidfile=$STATE_DIR/slurmd-$hn.pid
        log=$LOG_DIR/slurmd-$hn.log
    fi
    if pid=$(ours "$name"); then
        ((CONF_CHANGED)) || return 0
        say "slurm.conf changed, restarting $name"
        stop "$name" 30
    elif [[ $LAYOUT == local ]] && pid=$(any_running slurmd | head -n1) && [[ -n $pid ]]; then
        say "reusing slurmd pid $pid (not started by this script)"
        return 0
    fi
    say "starting $name"
    setsid "${prefix[@]}" slurmd 9>&- </dev/null >>"$log" 2>&1 \
        || die "$name failed to start (see $log)"
    wait_for 30 "$name pid file" "$log" pid_from_file "$pidfile" slurmd
    record "$name" "$(pid_from_file "$pidfile" slurmd)"
}

wait_node() {
    local node=$1 i st resumed=0 log=$LOG_DIR/slurmd.log
    [[ $LAYOUT == netns ]] && log=$LOG_DIR/slurmd-$node.log
    for ((i = 0; i < 600; i++)); do
        st=$(node_state "$node")
        case $st in
            idle|mixed|allocated|completing|planned) return 0 ;;
            down|drained|draining|drain|fail|failing)
                if ((!resumed)) && ((i >= 10)); then
                    say "node $node is $st, issuing State=RESUME"
                    scontrol update NodeName="$node" State=RESUME || true
                    resumed=1
                fi ;;
        esac
        sleep 0.1
    done
    tail -n 15 "$log" >&2 || true
    die "timed out after 60s waiting for node $node to become idle (state '${st:-unknown}'; see $log and $LOG_DIR/slurmctld.log)"
}

# ---------------------------------------------------------------- commands

# fd 9 holds the lock; every daemon is started with 9>&- so it does not inherit it
lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/lock"
    flock -w 180 9 || die "another slurm-cluster.sh holds $STATE_DIR/lock for more than 180s"
}

need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

cmd_up() {
    need_root
    lock
    local running=""
    [[ -f $LAYOUT_FILE ]] && running=$(cat "$LAYOUT_FILE")
    # started by an older version of this script (no layout file)
    [[ -z $running && -z $INSTANCE ]] && ours slurmctld >/dev/null && running="local 1"
    if [[ -n $running && ${running%% *} != "$LAYOUT" ]]; then
        # switching would cancel every job on the running cluster: not silently
        die "this cluster runs as '${running}' (layout nodes); run '$0${INSTANCE:+ --instance $INSTANCE} down' first to switch to $LAYOUT with $NODES node(s)"
    fi
    install_pkgs
    if [[ $LAYOUT == netns ]]; then
        net_up
        net_prune
    fi
    printf '%s %s\n' "$LAYOUT" "$NODES" >"$LAYOUT_FILE"
    write_configs
    start_munge
    if ((ACCOUNTING)); then
        start_mariadb
        start_slurmdbd
        register_cluster
    fi
    start_slurmctld
    local name hn
    while read -r name hn; do start_slurmd "$name" "$hn"; done < <(slurmd_names)
    if ((!ACCOUNTING)); then
        # accounting switched off: the database daemons are no longer needed
        stop slurmdbd 30
        stop mariadbd 60
    fi
    while read -r hn; do wait_node "$hn"; done < <(node_names)
    say "cluster $CLUSTER is up (nodes=$NODES, layout=$LAYOUT, accounting=$ACCOUNTING, cpus/node=$NCPUS, MinJobAge=$MINJOBAGE; SLURM_CONF=$SLURM_CONF)"
}

cancel_all_jobs() {
    ctld_ok || return 0
    local n i
    n=$(squeue -h -o %A 2>/dev/null | wc -l)
    ((n)) || return 0
    say "cancelling $n job(s) of cluster $CLUSTER"
    squeue -h -o %A | sort -u | xargs -r scancel || true
    for ((i = 0; i < 600; i++)); do
        [[ -z $(squeue -h -t PD,R,CG,CF,S -o %A 2>/dev/null) ]] && return 0
        sleep 0.1
    done
    say "warning: jobs still listed by squeue after 60s; stopping anyway (see $LOG_DIR/slurmctld.log)"
}

# stop everything of the current layout (caller holds the lock)
down_all() {
    if ours slurmctld >/dev/null; then
        cancel_all_jobs
    fi
    stop_all_slurmd
    # slurmd of nodes beyond the configured count (left by an earlier up)
    local f
    for f in "$PID_DIR"/slurmd-node*; do
        [[ -e $f ]] && stop "${f##*/}" 30
    done
    stop slurmctld 30
    stop slurmdbd 30
    stop mariadbd 60
    stop munged 30
    [[ $LAYOUT == netns ]] && net_down
    rm -f "$LAYOUT_FILE"
}

cmd_down() {
    need_root
    ((PURGE)) && [[ -z $INSTANCE ]] && die "--purge is only for named instances (it would delete /var/lib/mysql)"
    lock
    down_all
    if [[ $LAYOUT == local ]]; then
        local name pid left=()
        for name in slurmd slurmctld slurmdbd mariadbd munged; do
            for pid in $(any_running "$name"); do left+=("$name:$pid"); done
        done
        if ((${#left[@]})); then
            say "still running, not started by this script (left alone): ${left[*]}"
        fi
    fi
    if ((PURGE)); then
        say "purging $CONF_DIR $LIB_DIR $LOG_DIR $MYSQL_DATADIR $STATE_DIR"
        rm -rf -- "$CONF_DIR" "$LIB_DIR" "$LOG_DIR" "$MYSQL_DATADIR"
        exec 9>&-
        rm -rf -- "$STATE_DIR"
    fi
    say "down"
}

cmd_status() {
    local ok=0 name pid how hn
    local names=(munged)
    ((ACCOUNTING)) && names+=(mariadbd slurmdbd)
    names+=(slurmctld)
    while read -r name hn; do names+=("$name"); done < <(slurmd_names)
    echo "instance:  ${INSTANCE:-(default)}  cluster $CLUSTER, layout $LAYOUT, $NODES node(s), SLURM_CONF=$SLURM_CONF"
    for name in "${names[@]}"; do
        if pid=$(ours "$name"); then how="running, pid $pid (started by this script)"
        else
            pid=""
            [[ $LAYOUT == local || $name == munged ]] && pid=$(any_running "$name" | tr '\n' ' ')
            if [[ -n $pid ]]; then how="running, pid ${pid% } (not started by this script)"
            else how="not running"; fi
        fi
        printf '%-13s %s\n' "$name" "$how"
    done
    munge_ok && echo "munge:     answers" || { echo "munge:     NOT answering"; ok=1; }
    if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_CONF" 2>/dev/null; then
        cluster_registered && echo "slurmdbd:  answers, cluster $CLUSTER registered" \
            || { echo "slurmdbd:  NOT answering or cluster $CLUSTER not registered"; ok=1; }
    else
        echo "slurmdbd:  accounting disabled"
    fi
    ctld_ok && echo "slurmctld: answers" || { echo "slurmctld: NOT answering"; ok=1; }
    local nodes
    nodes=$(node_names)
    [[ -n $nodes ]] || { echo "node:      none configured"; ok=1; }
    for hn in $nodes; do
        if node_usable "$hn"; then
            echo "node:      $hn $(node_state "$hn")"
        else
            echo "node:      $hn not usable ($(node_state "$hn"))"
            ok=1
        fi
    done
    sinfo 2>&1 || true
    return $ok
}

# stop-daemon/start-daemon: one daemon down for an outage test, by the PID
# this script recorded (never by name); configuration is not touched
check_daemon_name() {
    case $NODE_ARG in
        slurmctld|slurmdbd) ;;
        *) die "usage: $0 stop-daemon|start-daemon slurmctld|slurmdbd" ;;
    esac
}

cmd_stop_daemon() {
    need_root
    check_daemon_name
    lock
    ours "$NODE_ARG" >/dev/null || die "$NODE_ARG is not running as a daemon started by this script; not stopping it"
    stop "$NODE_ARG" 30
    say "$NODE_ARG stopped"
}

cmd_start_daemon() {
    need_root
    check_daemon_name
    lock
    if ours "$NODE_ARG" >/dev/null; then
        say "$NODE_ARG already runs"
        return 0
    fi
    local name hn
    case $NODE_ARG in
        slurmdbd) start_slurmdbd ;;
        slurmctld) start_slurmctld
                   while read -r name hn; do wait_node "$hn"; done < <(slurmd_names) ;;
    esac
}

node_index() {
    [[ $LAYOUT == netns ]] || die "$CMD needs a multi-node instance (up --nodes N or --instance NAME)"
    [[ $NODE_ARG =~ ^node([1-9][0-9]*)$ ]] && ((BASH_REMATCH[1] <= NODES)) \
        || die "no node '$NODE_ARG' in this instance (node1..node$NODES)"
}

# kill-slurmd NODE: SIGKILL that node's slurmd only (its running jobs keep
# running in slurmstepd); slurmctld marks the node DOWN after SlurmdTimeout
cmd_kill_slurmd() {
    need_root
    node_index
    lock
    local name=slurmd-$NODE_ARG
    ours "$name" >/dev/null || die "$name is not running (or was not started by this script)"
    stop "$name" 10 KILL
}

cmd_start_slurmd() {
    need_root
    node_index
    lock
    start_slurmd "slurmd-$NODE_ARG" "$NODE_ARG"
    wait_node "$NODE_ARG"
    say "$NODE_ARG is $(node_state "$NODE_ARG")"
}

case $CMD in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) printf 'SLURM_CONF=%s\n' "$SLURM_CONF" ;;
    kill-slurmd) cmd_kill_slurmd ;;
    start-slurmd) cmd_start_slurmd ;;
    stop-daemon) cmd_stop_daemon ;;
    start-daemon) cmd_start_daemon ;;
esac
