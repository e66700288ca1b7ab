# shellcheck shell=bash
# Sourced by tools/slurm-cluster.sh: the private network of a multi-node
# instance.  Every node (and the controller) is a network namespace plus a
# UTS namespace (its own host name) joined to one bridge by a veth pair:
#
#   host (login node)  bridge $BRIDGE   $SUBNET.1/24
#   controller         netns $NS_PREFIX-ctl    $SUBNET.2   host name slurmctl
#   node i             netns $NS_PREFIX-node$i $SUBNET.(10+i) host name node$i
#
# Nothing is routed: the namespaces have no default route and the host's
# forwarding settings are not touched, so daemons and jobs can reach only
# the bridge's subnet.  Every namespace, link and UTS file made here is
# written to $NET_RECORD first, and `net_down` removes exactly those.

# net_record KIND NAME: remember that `up` made NAME (ns, link, uts)
net_record() {
    mkdir -p "$STATE_DIR"
    grep -qx "$1 $2" "$NET_RECORD" 2>/dev/null || printf '%s %s\n' "$1" "$2" >>"$NET_RECORD"
}

net_forget() {
    [[ -f $NET_RECORD ]] || return 0
    local tmp
    tmp=$(grep -vx "$1 $2" "$NET_RECORD" || true)
    if [[ -n $tmp ]]; then printf '%s\n' "$tmp" >"$NET_RECORD"; else rm -f "$NET_RECORD"; fi
}

link_exists() { ip link show "$1" >/dev/null 2>&1; }
ns_exists() { [[ -e /run/netns/$1 ]]; }

# the subnet must not be in use by anything but our bridge
check_subnet() {
    local line dev
    while read -r line; do
        dev=${line%% *}
        [[ $dev == "$BRIDGE" ]] && continue
        die "subnet $SUBNET.0/24 is already used by interface $dev; set HPCDATA_SLURM_SUBNET to a free 10.x.y"
    done < <(ip -o -4 addr show 2>/dev/null | awk -v s="$SUBNET." '$4 ~ "^"s {print $2}')
}

bridge_up() {
    check_subnet
    if ! link_exists "$BRIDGE"; then
        say "creating bridge $BRIDGE ($SUBNET.1/24)"
        net_record link "$BRIDGE"
        ip link add "$BRIDGE" type bridge
    fi
    ip -4 addr show dev "$BRIDGE" | grep -q "inet $SUBNET.1/" \
        || ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    if [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null) == 1 ]] \
        && command -v iptables >/dev/null && iptables -S FORWARD 2>/dev/null | grep -q '^-P FORWARD DROP'; then
        say "warning: bridged traffic passes iptables and FORWARD drops by default: node-to-node traffic (srun across nodes) may fail"
    fi
}

# host_up NAME HOSTNAME ADDR VETH: a namespace pair on the bridge (idempotent)
host_up() {
    local ns=$1 hn=$2 addr=$3 veth=$4 peer=${4}p uts=$UTS_DIR/$2
    if ! ns_exists "$ns"; then
        net_record ns "$ns"
        ip netns add "$ns"
    fi
    mkdir -p "$UTS_DIR"
    if ! mountpoint -q "$uts" 2>/dev/null; then
        net_record uts "$uts"
        : >"$uts"
        unshare --uts="$uts" hostname "$hn"
    fi
    if ! link_exists "$veth"; then
        net_record link "$veth"
        ip link add "$veth" type veth peer name "$peer"
        ip link set "$peer" netns "$ns"
    fi
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" -4 addr show dev "$peer" | grep -q "inet $addr/" \
        || ip -n "$ns" addr add "$addr/24" dev "$peer"
    ip -n "$ns" link set "$peer" up
}

# the namespaced hosts of this instance: "ns hostname addr veth" per line
net_hosts() {
    printf '%s %s %s %s\n' "$NS_PREFIX-ctl" "$CTL_HOST" "$CTL_ADDR" "${VETH_PREFIX}c"
    local i
    for ((i = 1; i <= NODES; i++)); do
        printf '%s %s %s %s\n' "$NS_PREFIX-node$i" "node$i" "$SUBNET.$((10 + i))" "${VETH_PREFIX}n$i"
    done
}

net_up() {
    bridge_up
    local ns hn addr veth
    while read -r ns hn addr veth; do
        host_up "$ns" "$hn" "$addr" "$veth"
    done < <(net_hosts)
}

# processes still inside namespace NS (jobs orphaned by a killed slurmd)
ns_pids() { ip netns pids "$1" 2>/dev/null || true; }

# net_remove_host NS HOSTNAME VETH: stop what is left inside, remove it
net_remove_host() {
    local ns=$1 hn=$2 veth=$3 pids i
    if ns_exists "$ns"; then
        pids=$(ns_pids "$ns" | tr '\n' ' ')
        if [[ -n ${pids// /} ]]; then
            # only our daemons and the jobs they started ever run in here
            say "killing processes left in $ns: $pids"
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                [[ -z $(ns_pids "$ns" | while read -r p; do [[ $(proc_state "$p") != Z ]] && echo "$p"; done) ]] && break
                sleep 0.1
            done
        fi
    fi
    if link_exists "$veth" && grep -qx "link $veth" "$NET_RECORD" 2>/dev/null; then
        ip link del "$veth" 2>/dev/null || true
    fi
    net_forget link "$veth"
    if ns_exists "$ns" && grep -qx "ns $ns" "$NET_RECORD" 2>/dev/null; then
        ip netns del "$ns"
    fi
    net_forget ns "$ns"
    local uts=$UTS_DIR/$hn
    if grep -qx "uts $uts" "$NET_RECORD" 2>/dev/null; then
        umount "$uts" 2>/dev/null || true
        rm -f "$uts"
    fi
    net_forget uts "$uts"
}

# nodes recorded beyond $NODES (after `up --nodes` with fewer nodes)
net_prune() {
    local i
    for ((i = NODES + 1; i <= 64; i++)); do
        grep -qx "ns $NS_PREFIX-node$i" "$NET_RECORD" 2>/dev/null || continue
        say "removing node$i (no longer configured)"
        stop "slurmd-node$i" 30
        net_remove_host "$NS_PREFIX-node$i" "node$i" "${VETH_PREFIX}n$i"
    done
}

# net_down: remove every namespace, link and UTS file recorded by net_up
net_down() {
    [[ -f $NET_RECORD ]] || return 0
    local kind name
    # nodes and controller first (their veths), the bridge last
    while read -r kind name; do
        [[ $kind == ns ]] || continue
        local hn=${name#"$NS_PREFIX"-} veth
        if [[ $hn == ctl ]]; then veth=${VETH_PREFIX}c; hn=$CTL_HOST
        else veth=${VETH_PREFIX}n${hn#node}; fi
        say "removing namespace $name"
        net_remove_host "$name" "$hn" "$veth"
    done < <(cat "$NET_RECORD")
    while read -r kind name; do
        case $kind in
            link) ip link del "$name" 2>/dev/null || true; say "removed link $name" ;;
            uts) umount "$name" 2>/dev/null || true; rm -f "$name" ;;
            ns) ip netns del "$name" 2>/dev/null || true ;;
        esac
        net_forget "$kind" "$name"
    done < <(cat "$NET_RECORD" 2>/dev/null)
    rm -f "$NET_RECORD"
    rmdir "$UTS_DIR" 2>/dev/null || true
}
