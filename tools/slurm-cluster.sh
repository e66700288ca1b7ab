#!/usr/bin/env bash
# Single-node Slurm 22.05 test cluster (Debian 12 packages), bound to 127.0.0.1.
#
#   tools/slurm-cluster.sh up       install (if needed), configure and start; no-op if already up
#   tools/slurm-cluster.sh down     cancel all jobs, stop the daemons this script started
#   tools/slurm-cluster.sh status   show daemon state and sinfo; exit 0 only if usable
#   tools/slurm-cluster.sh stop-daemon NAME    stop one daemon this script started (by its recorded PID)
#   tools/slurm-cluster.sh start-daemon NAME   start it again and wait until it answers
#                                   (NAME: slurmctld or slurmdbd; for outage tests)
#
# Environment:
#   HPCDATA_SLURM_ACCOUNTING=1|0   MariaDB + slurmdbd so that sacct works (default 1)
#   HPCDATA_SLURM_MINJOBAGE=N      seconds a finished job stays in slurmctld (default 300)
#   HPCDATA_SLURM_CPUS=N           CPUs advertised by the node (default 8)
#
# Must run as root.  Only daemons started by this script are ever signalled; their
# PIDs (plus start times, to survive PID reuse) are recorded under $STATE_DIR/pids.
set -euo pipefail

CLUSTER=hpcdata
ACCOUNTING=${HPCDATA_SLURM_ACCOUNTING:-1}
MINJOBAGE=${HPCDATA_SLURM_MINJOBAGE:-300}
NCPUS=${HPCDATA_SLURM_CPUS:-8}

STATE_DIR=/run/hpcdata-slurm
PID_DIR=$STATE_DIR/pids
LOG_DIR=/var/log/slurm
CONF_DIR=/etc/slurm
SLURM_CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
CTLD_STATE=/var/lib/slurm/slurmctld
SLURMD_SPOOL=/var/lib/slurm/slurmd
MUNGE_KEY=/etc/munge/munge.key
MYSQL_DATADIR=/var/lib/mysql
MYSQL_RUN=/run/mysqld
MARIADB_LOG=$LOG_DIR/mariadb.log

SLURM_PKGS=(slurmctld slurmd slurm-client munge)
ACCT_PKGS=(mariadb-server slurmdbd)

T0=${EPOCHREALTIME/[.,]/}
say() {
    local ms=$(( (${EPOCHREALTIME/[.,]/} - T0) / 1000 ))
    printf '[slurm-cluster %d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2
}
die() { printf '[slurm-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

case $ACCOUNTING in 0|1) ;; *) die "HPCDATA_SLURM_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'";; esac
[[ $MINJOBAGE =~ ^[0-9]+$ ]] || die "HPCDATA_SLURM_MINJOBAGE must be an integer, got '$MINJOBAGE'"
[[ $NCPUS =~ ^[1-9][0-9]*$ ]] || die "HPCDATA_SLURM_CPUS must be a positive integer, got '$NCPUS'"

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

# record NAME PID: remember that this script started NAME as PID
record() {
    mkdir -p "$PID_DIR"
    printf '%s %s\n' "$2" "$(proc_starttime "$2")" >"$PID_DIR/$1"
}

# ours NAME -> prints PID if NAME was started by this script and still runs
ours() {
    local f=$PID_DIR/$1 pid start
    [[ -f $f ]] || return 1
    read -r pid start <"$f" || return 1
    if alive "$pid" "$1" && [[ $(proc_starttime "$pid") == "$start" ]]; then
        printf '%s' "$pid"
        return 0
    fi
    rm -f "$f"
    return 1
}

# any_running COMM -> prints PIDs (not zombies) of processes called COMM
any_running() {
    local pid out=()
    for pid in $(pgrep -x "$1" 2>/dev/null || true); do
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

# stop NAME TIMEOUT: SIGTERM our NAME, SIGKILL after TIMEOUT seconds
stop() {
    local name=$1 timeout=$2 pid i
    pid=$(ours "$name") || return 0
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        alive "$pid" "$name" || break
        sleep 0.1
    done
    if alive "$pid" "$name"; then
        say "$name (pid $pid) ignored SIGTERM for ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do alive "$pid" "$name" || break; sleep 0.1; done
        alive "$pid" "$name" && die "$name (pid $pid) survived SIGKILL"
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

# ---------------------------------------------------------------- checks

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
mariadb_ok() { mariadb-admin --connect-timeout=2 ping >/dev/null 2>&1; }
dbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
cluster_registered() { sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; }

node_name() { sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$SLURM_CONF" 2>/dev/null | head -n1; }
node_state() { sinfo -h -n "$1" -o %T 2>/dev/null | head -n1 | tr -cd 'a-z'; }
node_usable() {
    case $(node_state "$1") in idle|mixed|allocated|completing) return 0;; *) return 1;; esac
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

write_configs() {
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$PID_DIR" "$CTLD_STATE" "$SLURMD_SPOOL"
    local host probe node mem
    host=$(hostname -s)
    probe=$(slurmd -C 2>/dev/null | head -n1) || true
    node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$probe")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")
    [[ -n $node ]] || die "could not parse 'slurmd -C' output: $probe"
    [[ -n $mem ]] || mem=1000
    [[ $node == "$host" ]] || say "warning: slurmd -C reports NodeName=$node but hostname -s is $host"

    local acct_type=accounting_storage/none
    ((ACCOUNTING)) && acct_type=accounting_storage/slurmdbd

    local conf
    conf=$(cat <<EOF
# Generated by tools/slurm-cluster.sh -- edits are overwritten by the next 'up'.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# bind daemons to the address of the host name (127.0.0.1), not to all interfaces
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobCompType=jobcomp/none
AccountingStorageType=$acct_type
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
# sample every second: with the default 30 s short test jobs never get MaxRSS
JobAcctGatherFrequency=task=1
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MaxJobCount=20000
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
)
    if put_file "$SLURM_CONF" 644 "$conf"; then
        CONF_CHANGED=1
        say "wrote $SLURM_CONF"
    fi

    if ((ACCOUNTING)); then
        local pw=""
        [[ -f $DBD_CONF ]] && pw=$(sed -n 's/^StoragePass=//p' "$DBD_CONF" | head -n1)
        [[ -n $pw ]] || pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
        DBD_PASS=$pw
        conf=$(cat <<EOF
# Generated by tools/slurm-cluster.sh -- edits are overwritten by the next 'up'.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
# listen on the address of the host name (127.0.0.1) instead of 0.0.0.0
CommunicationParameters=NoInAddrAny
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$STATE_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$pw
StorageLoc=slurm_acct_db
EOF
)
        # slurmdbd refuses a config readable by group/others
        if put_file "$DBD_CONF" 600 "$conf"; then
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
    if mariadb_ok; then return 0; fi
    local pid
    if pid=$(any_running mariadbd | head -n1) && [[ -n $pid ]]; then
        die "mariadbd (pid $pid) runs but does not answer 'mariadb-admin ping'; see $MARIADB_LOG"
    fi
    install -d -o mysql -g mysql -m 0755 "$MYSQL_RUN"
    if [[ ! -d $MYSQL_DATADIR/mysql ]]; then
        say "initialising $MYSQL_DATADIR"
        mariadb-install-db --user=mysql --datadir="$MYSQL_DATADIR" >>"$MARIADB_LOG" 2>&1 \
            || die "mariadb-install-db failed (see $MARIADB_LOG)"
    fi
    say "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql --datadir="$MYSQL_DATADIR" \
        --pid-file="$MYSQL_RUN/mysqld.pid" --socket="$MYSQL_RUN/mysqld.sock" \
        --bind-address=127.0.0.1 --port=3306 --skip-name-resolve \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        9>&- </dev/null >>"$MARIADB_LOG" 2>&1 &
    pid=$!
    local i
    for ((i = 0; i < 600; i++)); do
        mariadb_ok && break
        alive "$pid" mariadbd || { tail -n 15 "$MARIADB_LOG" >&2; die "mariadbd exited during start-up (see $MARIADB_LOG)"; }
        sleep 0.1
    done
    mariadb_ok || { tail -n 15 "$MARIADB_LOG" >&2; die "timed out after 60s waiting for mariadbd (see $MARIADB_LOG)"; }
    record mariadbd "$pid"
}

setup_database() {
    mariadb -u root <<EOF || die "creating the slurm database/user failed (see $MARIADB_LOG)"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBD_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBD_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

# A daemon this script did not start: reuse it if it answers (return 0),
# refuse if it runs but does not answer, return 1 if none runs.
reuse_foreign() {   # name check
    local name=$1 check=$2 pid
    pid=$(any_running "$name" | head -n1) && [[ -n $pid ]] || return 1
    if "$check"; then
        say "reusing $name pid $pid (not started by this script; config changes not applied)"
        return 0
    fi
    die "$name (pid $pid) not started by this script runs but does not answer; stop it first"
}

# Start a Slurm daemon, wait (bounded) until `check` succeeds, record its pid.
launch() {   # name check what
    local name=$1 check=$2 what=$3 pid
    say "starting $name"
    setsid "$name" 9>&- </dev/null >>"$LOG_DIR/$name.log" 2>&1 \
        || die "$name failed to start (see $LOG_DIR/$name.log)"
    wait_for 60 "$what" "$LOG_DIR/$name.log" "$check"
    pid=$(pid_from_file "$STATE_DIR/$name.pid" "$name") || die "$name answers but its pid file is stale"
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
    launch slurmdbd dbd_ok "slurmdbd to answer sacctmgr"
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

start_slurmctld() {
    local pid
    if pid=$(ours slurmctld); then
        if ((CONF_CHANGED)); then
            say "slurm.conf changed, restarting slurmctld and slurmd"
            stop slurmd 30
            stop slurmctld 30
        else
            wait_for 60 "slurmctld to answer 'scontrol ping'" "$LOG_DIR/slurmctld.log" ctld_ok
            return 0
        fi
    elif reuse_foreign slurmctld ctld_ok; then
        return 0
    fi
    check_state_dir
    launch slurmctld ctld_ok "slurmctld to answer 'scontrol ping'"
}

start_slurmd() {
    local pid
    if pid=$(ours slurmd); then
        ((CONF_CHANGED)) || return 0
        say "slurm.conf changed, restarting slurmd"
        stop slurmd 30
    elif pid=$(any_running slurmd | head -n1) && [[ -n $pid ]]; then
        say "reusing slurmd pid $pid (not started by this script)"
        return 0
    fi
    say "starting slurmd"
    setsid slurmd 9>&- </dev/null >>"$LOG_DIR/slurmd.log" 2>&1 \
        || die "slurmd failed to start (see $LOG_DIR/slurmd.log)"
    wait_for 30 "slurmd pid file" "$LOG_DIR/slurmd.log" pid_from_file "$STATE_DIR/slurmd.pid" slurmd
    record slurmd "$(pid_from_file "$STATE_DIR/slurmd.pid" slurmd)"
}

wait_node() {
    local node=$1 i st resumed=0
    for ((i = 0; i < 600; i++)); do
        st=$(node_state "$node")
        case $st in
            idle|mixed|allocated|completing) return 0 ;;
            down|drained|draining|drain|fail|failing)
                if ((!resumed)) && ((i >= 10)); then
                    say "node $node is $st, issuing State=RESUME"
                    scontrol update NodeName="$node" State=RESUME || true
                    resumed=1
                fi ;;
        esac
        sleep 0.1
    done
    tail -n 15 "$LOG_DIR/slurmd.log" >&2 || true
    die "timed out after 60s waiting for node $node to become idle (state '${st:-unknown}'; see $LOG_DIR/slurmd.log and $LOG_DIR/slurmctld.log)"
}

# ---------------------------------------------------------------- commands

# fd 9 holds the lock; every daemon is started with 9>&- so it does not inherit it
lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/lock"
    flock -w 180 9 || die "another slurm-cluster.sh holds $STATE_DIR/lock for more than 180s"
}

cmd_up() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    lock
    install_pkgs
    write_configs
    start_munge
    if ((ACCOUNTING)); then
        start_mariadb
        start_slurmdbd
        register_cluster
    fi
    start_slurmctld
    start_slurmd
    if ((!ACCOUNTING)); then
        # accounting switched off: the database daemons are no longer needed
        stop slurmdbd 30
        stop mariadbd 60
    fi
    wait_node "$(node_name)"
    say "cluster $CLUSTER is up (accounting=$ACCOUNTING, cpus=$NCPUS, MinJobAge=$MINJOBAGE)"
}

cancel_all_jobs() {
    ctld_ok || return 0
    local n i
    n=$(squeue -h -o %A 2>/dev/null | wc -l)
    ((n)) || return 0
    say "cancelling $n job(s)"
    squeue -h -o %A | sort -u | xargs -r scancel || true
    for ((i = 0; i < 600; i++)); do
        [[ -z $(squeue -h -t PD,R,CG,CF,S -o %A 2>/dev/null) ]] && return 0
        sleep 0.1
    done
    say "warning: jobs still listed by squeue after 60s; stopping anyway (see $LOG_DIR/slurmctld.log)"
}

cmd_down() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    lock
    if ours slurmctld >/dev/null; then
        cancel_all_jobs
    fi
    stop slurmd 30
    stop slurmctld 30
    stop slurmdbd 30
    stop mariadbd 60
    stop munged 30
    local name pid left=()
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        for pid in $(any_running "$name"); do left+=("$name:$pid"); done
    done
    if ((${#left[@]})); then
        say "still running, not started by this script (left alone): ${left[*]}"
    fi
    say "down"
}

cmd_status() {
    local ok=0 name pid how
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid=$(ours "$name"); then how="running, pid $pid (started by this script)"
        else
            pid=$(any_running "$name" | tr '\n' ' ')
            if [[ -n $pid ]]; then how="running, pid ${pid% } (not started by this script)"
            else how="not running"; fi
        fi
        printf '%-10s %s\n' "$name" "$how"
    done
    munge_ok && echo "munge:     answers" || { echo "munge:     NOT answering"; ok=1; }
    if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_CONF" 2>/dev/null; then
        cluster_registered && echo "slurmdbd:  answers, cluster $CLUSTER registered" \
            || { echo "slurmdbd:  NOT answering or cluster $CLUSTER not registered"; ok=1; }
    else
        echo "slurmdbd:  accounting disabled"
    fi
    ctld_ok && echo "slurmctld: answers" || { echo "slurmctld: NOT answering"; ok=1; }
    local node
    node=$(node_name)
    if [[ -n $node ]] && node_usable "$node"; then
        echo "node:      $node $(node_state "$node")"
    else
        echo "node:      ${node:-?} not usable (${node:+$(node_state "$node")})"
        ok=1
    fi
    sinfo 2>&1 || true
    return $ok
}

# stop-daemon/start-daemon: one daemon down for an outage test, by the PID
# this script recorded (never by name); configuration is not touched
check_daemon_name() {
    case ${1:-} in
        slurmctld|slurmdbd) ;;
        *) die "usage: $0 stop-daemon|start-daemon slurmctld|slurmdbd" ;;
    esac
}

cmd_stop_daemon() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    check_daemon_name "${1:-}"
    lock
    ours "$1" >/dev/null || die "$1 is not running as a daemon started by this script; not stopping it"
    stop "$1" 30
    say "$1 stopped"
}

cmd_start_daemon() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    check_daemon_name "${1:-}"
    lock
    if ours "$1" >/dev/null; then
        say "$1 already runs"
        return 0
    fi
    case $1 in
        slurmdbd) launch slurmdbd dbd_ok "slurmdbd to answer sacctmgr" ;;
        slurmctld) launch slurmctld ctld_ok "slurmctld to answer 'scontrol ping'"
                   wait_node "$(node_name)" ;;
    esac
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    stop-daemon) cmd_stop_daemon "${2:-}" ;;
    start-daemon) cmd_start_daemon "${2:-}" ;;
    *) echo "usage: $0 up|down|status|stop-daemon NAME|start-daemon NAME" >&2; exit 2 ;;
esac
