# The 2-node network for slurm/local-cluster.sh (sourced, not run): a bridge in the root
# namespace holding the controller address, and one network namespace per node.
# shellcheck shell=bash

network_names() {  # the 2-node network's names, unique to STATE_DIR (interface names <= 15 chars)
    NET_ID=$(printf '%s' "$STATE_DIR" | md5sum | cut -c1-4)
    BRIDGE="slbr$NET_ID"
    NETNS_PREFIX="slurmlocal-$NET_ID-node"
    VETH_PREFIX="slv$NET_ID"
    NODE_PREFIX="sl$NET_ID-node"
}

netns_path() { echo "/var/run/netns/${NETNS_PREFIX}$1"; }  # netns_path 1|2

hosts_lines() {
    echo "$NET_PREFIX.2 ${NODE_PREFIX}1 $HOSTS_MARKER"
    echo "$NET_PREFIX.3 ${NODE_PREFIX}2 $HOSTS_MARKER"
}

remove_hosts_lines() {
    grep -qF "$HOSTS_MARKER" "$HOSTS_FILE" 2>/dev/null || return 0
    local kept
    kept=$(grep -vF "$HOSTS_MARKER" "$HOSTS_FILE" || true)
    # Write in place: /etc/hosts is often a bind mount that cannot be replaced by rename.
    printf '%s\n' "$kept" >"$HOSTS_FILE"
}

reclaim_leftover_network() {  # a network of this state dir left by a killed cluster is removed
    if ip link show "$BRIDGE" >/dev/null 2>&1 || [[ -e "$(netns_path 1)" || -e "$(netns_path 2)" ]] \
            || grep -qF "$HOSTS_MARKER" "$HOSTS_FILE" 2>/dev/null; then
        log "removing the 2-node network ($BRIDGE, netns ${NETNS_PREFIX}1/2) left over by this state dir"
        teardown_network
    fi
    if grep -Eq "^[^#]*[[:space:]]${NODE_PREFIX}[12]([[:space:]]|\$)" "$HOSTS_FILE"; then
        die "$HOSTS_FILE already maps ${NODE_PREFIX}1/2 without our marker; remove those lines first"
    fi
}

pick_subnet() {  # NET_PREFIX: a 10.77.X /24 that no interface or route of this host uses yet
    local octet=$((16#$NET_ID % 250 + 1)) tries=0
    while ip -4 -o addr show | grep -q " $NET_OCTET_BASE\.$octet\." \
            || ip -4 route show | grep -q "^$NET_OCTET_BASE\.$octet\."; do
        octet=$((octet % 250 + 1)); tries=$((tries + 1))
        (( tries < 250 )) || die "no free $NET_OCTET_BASE.X.0/24 subnet for the 2-node network"
    done
    NET_PREFIX="$NET_OCTET_BASE.$octet"
}

setup_network() {
    log "creating bridge $BRIDGE ($NET_PREFIX.1) and network namespaces for $(node_names)"
    # Recorded first, so that `down` also removes a network whose setup failed half-way.
    touch "$STATE_DIR/run/network-created"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET_PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local index ns
    for index in 1 2; do
        ns="${NETNS_PREFIX}$index"
        ip netns add "$ns"
        ip link add "${VETH_PREFIX}h$index" type veth peer name "${VETH_PREFIX}n$index"
        ip link set "${VETH_PREFIX}n$index" netns "$ns"
        ip link set "${VETH_PREFIX}h$index" master "$BRIDGE"
        ip link set "${VETH_PREFIX}h$index" up
        ip -n "$ns" link set "${VETH_PREFIX}n$index" name eth0
        ip -n "$ns" addr add "$NET_PREFIX.$((index + 1))/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done
    hosts_lines >>"$HOSTS_FILE"
}

teardown_network() {
    local index ns_file ns_inode proc_dir leftover=()
    for index in 1 2; do
        ns_file=$(netns_path "$index")
        [[ -e "$ns_file" ]] || continue
        # Anything still running in our namespaces belongs to this cluster (jobs, stepds).
        ns_inode=$(stat -L -c %i "$ns_file" 2>/dev/null || true)
        if [[ -n "$ns_inode" ]]; then
            for proc_dir in /proc/[0-9]*; do
                [[ "$(readlink "$proc_dir/ns/net" 2>/dev/null)" == "net:[$ns_inode]" ]] \
                    && leftover+=("${proc_dir#/proc/}")
            done
        fi
    done
    [[ ${#leftover[@]} -gt 0 ]] && stop_pids "processes left in the node namespaces" "${leftover[@]}"
    for index in 1 2; do
        ip netns del "${NETNS_PREFIX}$index" 2>/dev/null || true
        ip link del "${VETH_PREFIX}h$index" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    remove_hosts_lines
}

# ------------------------------------------------------------ link shaping ----------
# A token-bucket filter (tc tbf) on each node's eth0 limits what that node sends, so
# both directions of the link between the two nodes run at RATE (see docs/commbench.md).
LINK_DEV=eth0

shape_link() {  # shape_link RATE BURST LATENCY, e.g. 300mbit 256kb 50ms
    local rate="$1" burst="$2" latency="$3" index
    for index in 1 2; do
        [[ -e "$(netns_path "$index")" ]] \
            || die "no network namespace for ${NODE_PREFIX}$index: is the 2-node cluster up?"
        nsenter --net="$(netns_path "$index")" tc qdisc replace dev "$LINK_DEV" root tbf \
            rate "$rate" burst "$burst" latency "$latency" \
            || die "tc qdisc replace on ${NODE_PREFIX}$index's $LINK_DEV failed (rate $rate burst $burst latency $latency)"
    done
    echo "$rate" >"$STATE_DIR/run/link-shape"
    log "link ${NODE_PREFIX}1 <-> ${NODE_PREFIX}2 shaped to $rate (tbf burst $burst latency $latency on each $LINK_DEV)"
}

unshape_link() {  # removes the qdisc of both nodes; succeeds when none is there
    local index
    for index in 1 2; do
        [[ -e "$(netns_path "$index")" ]] || continue
        if nsenter --net="$(netns_path "$index")" tc qdisc show dev "$LINK_DEV" root | grep -q tbf; then
            nsenter --net="$(netns_path "$index")" tc qdisc del dev "$LINK_DEV" root
        fi
    done
    rm -f "$STATE_DIR/run/link-shape"
    log "link ${NODE_PREFIX}1 <-> ${NODE_PREFIX}2 unshaped"
}

link_shape() {  # the tbf rate of node 1's eth0, or "unshaped"
    local shown
    shown=$(nsenter --net="$(netns_path 1)" tc qdisc show dev "$LINK_DEV" root 2>/dev/null || true)
    if [[ "$shown" == *tbf* ]]; then sed -n 's/.* rate \([^ ]*\).*/\1/p' <<<"$shown"; else echo unshaped; fi
}
