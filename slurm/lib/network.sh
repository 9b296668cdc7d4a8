# The 2-node network for slurm/local-cluster.sh (sourced, not run): a bridge in the root
# namespace holding the controller address, and one network namespace per node.
# shellcheck shell=bash

netns_path() { echo "/var/run/netns/${NETNS_PREFIX}$1"; }

hosts_lines() { echo "$NET_PREFIX.2 node1 $HOSTS_MARKER"; echo "$NET_PREFIX.3 node2 $HOSTS_MARKER"; }

remove_hosts_lines() {
    grep -qF "$HOSTS_MARKER" "$HOSTS_FILE" 2>/dev/null || return 0
    local kept
    kept=$(grep -vF "$HOSTS_MARKER" "$HOSTS_FILE" || true)
    # Write in place: /etc/hosts is often a bind mount that cannot be replaced by rename.
    printf '%s\n' "$kept" >"$HOSTS_FILE"
}

check_network_free() {  # the 2-node network has fixed names and addresses: one per machine
    if ip link show "$BRIDGE" >/dev/null 2>&1 || [[ -e "$(netns_path node1)" ]]; then
        die "the 2-node network ($BRIDGE, netns ${NETNS_PREFIX}node1) already exists;" \
            "another 2-node local cluster may be up (see $HOSTS_FILE for its state dir)"
    fi
    if grep -Eq '^[^#]*[[:space:]](node1|node2)([[:space:]]|$)' "$HOSTS_FILE"; then
        die "$HOSTS_FILE already maps node1/node2; remove those lines first"
    fi
}

setup_network() {
    log "creating bridge $BRIDGE ($NET_PREFIX.1) and network namespaces for node1, node2"
    # Recorded first, so that `down` also removes a network whose setup failed half-way.
    touch "$STATE_DIR/run/network-created"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET_PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local index=1 node ns
    for node in node1 node2; do
        ns="${NETNS_PREFIX}$node"
        ip netns add "$ns"
        ip link add "slurml-h$index" type veth peer name "slurml-n$index"
        ip link set "slurml-n$index" netns "$ns"
        ip link set "slurml-h$index" master "$BRIDGE"
        ip link set "slurml-h$index" up
        ip -n "$ns" link set "slurml-n$index" name eth0
        ip -n "$ns" addr add "$NET_PREFIX.$((index + 1))/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        index=$((index + 1))
    done
    hosts_lines >>"$HOSTS_FILE"
}

teardown_network() {
    local node ns_file ns_inode proc_dir leftover=()
    for node in node1 node2; do
        ns_file=$(netns_path "$node")
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
    for node in node1 node2; do
        ip netns del "${NETNS_PREFIX}$node" 2>/dev/null || true
    done
    ip link del slurml-h1 2>/dev/null || true
    ip link del slurml-h2 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    remove_hosts_lines
}

# ------------------------------------------------------------ link shaping ----------
# A token-bucket filter (tc tbf) on each node's eth0 limits what that node sends, so
# both directions of the node1 <-> node2 link run at RATE (see docs/commbench.md).
LINK_DEV=eth0

shape_link() {  # shape_link RATE BURST LATENCY, e.g. 300mbit 256kb 50ms
    local rate="$1" burst="$2" latency="$3" node
    for node in node1 node2; do
        [[ -e "$(netns_path "$node")" ]] || die "no network namespace for $node: is the 2-node cluster up?"
        nsenter --net="$(netns_path "$node")" tc qdisc replace dev "$LINK_DEV" root tbf \
            rate "$rate" burst "$burst" latency "$latency" \
            || die "tc qdisc replace on $node's $LINK_DEV failed (rate $rate burst $burst latency $latency)"
    done
    echo "$rate" >"$STATE_DIR/run/link-shape"
    log "link node1 <-> node2 shaped to $rate (tbf burst $burst latency $latency on each $LINK_DEV)"
}

unshape_link() {  # removes the qdisc of both nodes; succeeds when none is there
    local node
    for node in node1 node2; do
        [[ -e "$(netns_path "$node")" ]] || continue
        if nsenter --net="$(netns_path "$node")" tc qdisc show dev "$LINK_DEV" root | grep -q tbf; then
            nsenter --net="$(netns_path "$node")" tc qdisc del dev "$LINK_DEV" root
        fi
    done
    rm -f "$STATE_DIR/run/link-shape"
    log "link node1 <-> node2 unshaped"
}

link_shape() {  # the tbf rate of node1's eth0, or "unshaped"
    local shown
    shown=$(nsenter --net="$(netns_path node1)" tc qdisc show dev "$LINK_DEV" root 2>/dev/null || true)
    if [[ "$shown" == *tbf* ]]; then sed -n 's/.* rate \([^ ]*\).*/\1/p' <<<"$shown"; else echo unshaped; fi
}
