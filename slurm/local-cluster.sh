#!/usr/bin/env bash
# A real single-host Slurm test cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd) with
# all of its state in one directory.  See docs/slurm-local-cluster.md.
#
#   slurm/local-cluster.sh up [--nodes 1|2] [--state-dir DIR]
#   slurm/local-cluster.sh down [--state-dir DIR] [--keep]
#   slurm/local-cluster.sh status [--state-dir DIR]
#   slurm/local-cluster.sh env [--state-dir DIR]     # eval "$(slurm/local-cluster.sh env)"
#   slurm/local-cluster.sh shape RATE [--burst B] [--latency L] [--state-dir DIR]  # e.g. 300mbit
#   slurm/local-cluster.sh unshape [--state-dir DIR]  # 2-node cluster: tc tbf on the node link
#
# Exit codes: 0 ok, 1 failure (logs are printed), 2 usage error, 3 cannot run here
# (not root, or packages missing and not installable).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
TEMPLATE_DIR="$SCRIPT_DIR/templates"

MAX_STATE_DIR_CHARS=60
STATE_DIR="${SLURM_LOCAL_STATE:-$REPO_DIR/.slurm-local}"
# A checkout deep in the filesystem would make Slurm's socket paths too long:
# its default state then lives under /tmp, named after the checkout.
if [[ -z "${SLURM_LOCAL_STATE:-}" && ${#STATE_DIR} -gt $MAX_STATE_DIR_CHARS ]]; then
    STATE_DIR="/tmp/slurm-local-$(printf '%s' "$REPO_DIR" | md5sum | cut -c1-8)"
fi
NODES=1
KEEP=0
RATE=""
BURST=256kb
LINK_LATENCY=50ms
TIMEOUT_S="${SLURM_LOCAL_TIMEOUT:-60}"
GRACE_S="${SLURM_LOCAL_GRACE:-10}"
# shellcheck disable=SC2034  # used by render, like every @KEY@ of the templates
CRED_EXPIRE_S="${SLURM_LOCAL_CRED_EXPIRE:-10}"
CLUSTER_NAME=local
PARTITION=debug
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
REQUIRED_COMMANDS=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mungekey mariadbd
                   mariadb-install-db mariadb mariadb-admin)

# The 2-node network: one bridge in the root namespace (the controller's side) and one
# network namespace per node.  Its names, node names and subnet are derived from the state
# dir (see network_names), so clusters of different checkouts never collide.
NET_OCTET_BASE=10.77
HOSTS_FILE=/etc/hosts
GLOBAL_LOCK=/run/lock/slurm-local.lock

log() { printf '[local-cluster +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage_error() { log "usage error: $*"; sed -n '5,13p' "${BASH_SOURCE[0]}" >&2; exit 2; }

parse_args() {
    COMMAND="${1:-}"
    [[ -n "$COMMAND" ]] || usage_error "missing command (up|down|status|env|shape|unshape)"
    shift
    if [[ "$COMMAND" == shape ]]; then
        RATE="${1:-}"
        [[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?([kmg]?bit|[kmg]?bps)$ ]] \
            || usage_error "shape needs a rate like 100mbit or 1gbit, got '$RATE'"
        shift
    fi
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
            --nodes=*) NODES="${1#*=}"; shift ;;
            --state-dir) STATE_DIR="${2:?--state-dir needs a value}"; shift 2 ;;
            --state-dir=*) STATE_DIR="${1#*=}"; shift ;;
            --keep) KEEP=1; shift ;;
            --burst) BURST="${2:?--burst needs a value}"; shift 2 ;;
            --latency) LINK_LATENCY="${2:?--latency needs a value}"; shift 2 ;;
            -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) usage_error "unknown argument '$1'" ;;
        esac
    done
    [[ "$NODES" == 1 || "$NODES" == 2 ]] || usage_error "--nodes must be 1 or 2, got '$NODES'"
    mkdir -p "$(dirname "$STATE_DIR")"
    STATE_DIR="$(cd "$(dirname "$STATE_DIR")" && pwd)/$(basename "$STATE_DIR")"
    # slurmstepd makes Unix sockets named <state>/spool/slurmd-<node>/<node>_<job>.<step>,
    # and such a path must fit in 108 bytes.
    if [[ "$COMMAND" == up && ${#STATE_DIR} -gt $MAX_STATE_DIR_CHARS ]]; then
        usage_error "--state-dir '$STATE_DIR' is ${#STATE_DIR} characters; at most" \
            "$MAX_STATE_DIR_CHARS fit in Slurm's Unix socket paths"
    fi
    SLURM_CONF_PATH="$STATE_DIR/etc/slurm.conf"
    CLUSTER_ENV="$STATE_DIR/cluster.env"
    HOSTS_MARKER="# slurm-local:$STATE_DIR"
    network_names
}

# shellcheck source=lib/processes.sh
. "$SCRIPT_DIR/lib/processes.sh"
# shellcheck source=lib/network.sh
. "$SCRIPT_DIR/lib/network.sh"

# ------------------------------------------------------------------- helpers ---------

free_port() {  # a TCP port nothing listens on, not among those already picked
    local port tries=0
    while (( tries < 200 )); do
        port=$(( 20000 + RANDOM % 12000 ))
        tries=$((tries + 1))
        [[ " ${PICKED_PORTS:-} " == *" $port "* ]] && continue
        if [[ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]; then
            PICKED_PORTS="${PICKED_PORTS:-} $port"; echo "$port"; return 0
        fi
    done
    die "no free TCP port found in 20000-31999"
}

render() {  # render TEMPLATE OUT KEY...: replace @KEY@ with the value of variable KEY
    local template="$1" out="$2"; shift 2
    local line key
    while IFS= read -r line || [[ -n "$line" ]]; do
        for key in "$@"; do line=${line//"@$key@"/"${!key}"}; done
        printf '%s\n' "$line"
    done <"$template" >"$out"
}

wait_for() {  # wait_for DESCRIPTION LOGFILE COMMAND...: poll up to TIMEOUT_S seconds
    local what="$1" logfile="$2"; shift 2
    local deadline=$((SECONDS + TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS >= deadline )); then
            log "timed out after ${TIMEOUT_S}s waiting for $what; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.3
    done
}

slurm() { SLURM_CONF="$SLURM_CONF_PATH" "$@"; }

node_names() {
    if [[ "$NODES" == 2 ]]; then echo "${NODE_PREFIX}1 ${NODE_PREFIX}2"; else hostname -s; fi
}

ensure_packages() {
    local missing=() cmd
    for cmd in "${REQUIRED_COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $EUID -ne 0 ]]; then
        log "missing commands: ${missing[*]}; installing ${PACKAGES[*]} needs root"
        exit 3
    fi
    log "installing Debian packages: ${PACKAGES[*]} (missing: ${missing[*]})"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"; } \
            >"/tmp/slurm-local-apt.$$.log" 2>&1; then
        tail -n 20 "/tmp/slurm-local-apt.$$.log" >&2
        log "apt-get failed (full log: /tmp/slurm-local-apt.$$.log)"
        exit 3
    fi
    rm -f "/tmp/slurm-local-apt.$$.log"
}

# -------------------------------------------------------------------- state ----------

cluster_fact() {  # cluster_fact KEY: a value that `up` recorded in cluster.env
    sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$CLUSTER_ENV"
}

daemon_names() {  # the pid-file names of every daemon of the recorded cluster
    local node
    echo munged mariadbd slurmdbd slurmctld
    for node in $(cluster_fact NODE_NAMES); do echo "slurmd-$node"; done
}

is_up() {  # every daemon recorded in the state dir is alive
    [[ -f "$CLUSTER_ENV" ]] || return 1
    local name
    for name in $(daemon_names); do
        pid_from_file "$STATE_DIR/run/$name.pid" >/dev/null || return 1
    done
}

write_configs() {
    local host_short mem_mb cpus node_lines="" node
    host_short=$(hostname -s)
    # nproc honours OMP_NUM_THREADS: a shell (or test session) that limits its threads must
    # not shrink the node to that many CPUs.
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    # A bit under the machine's memory so that `--mem` requests up to that size fit.
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    if [[ "$NODES" == 2 ]]; then
        CTL_ADDR="$NET_PREFIX.1"
        for node in 1 2; do
            [[ -z "$node_lines" ]] || node_lines+=$'\n'
            node_lines+="NodeName=$NODE_PREFIX$node NodeAddr=$NET_PREFIX.$((node + 1))"
            node_lines+=" NodeHostname=$NODE_PREFIX$node CPUs=$cpus RealMemory=$mem_mb"
        done
    else
        CTL_ADDR=127.0.0.1
        node_lines="NodeName=$host_short NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb"
    fi
    CTL_HOST="$host_short"
    MUNGE_SOCKET="$STATE_DIR/munge/munged.socket"
    SLURMCTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)
    SLURMDBD_PORT=$(free_port); MARIADB_PORT=$(free_port)
    DB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    # shellcheck disable=SC2034  # used by render
    NODE_LINES="$node_lines"
    local keys=(CLUSTER_NAME CTL_HOST CTL_ADDR MUNGE_SOCKET SLURMCTLD_PORT SLURMD_PORT SLURMDBD_PORT
                MARIADB_PORT STATE_DIR PARTITION DB_PASSWORD NODE_LINES CRED_EXPIRE_S)
    render "$TEMPLATE_DIR/slurm.conf.in" "$STATE_DIR/etc/slurm.conf" "${keys[@]}"
    (umask 077; render "$TEMPLATE_DIR/slurmdbd.conf.in" "$STATE_DIR/etc/slurmdbd.conf" "${keys[@]}")
    chmod 600 "$STATE_DIR/etc/slurmdbd.conf"
    cat >"$CLUSTER_ENV" <<EOF
# Written by slurm/local-cluster.sh up; read by \`down\`, \`status\` and tests/slurm_cluster_fixture.py.
NODES=$NODES
NODE_NAMES="$(node_names)"
NET_PREFIX=${NET_PREFIX:-}
CLUSTER_NAME=$CLUSTER_NAME
PARTITION=$PARTITION
CTL_HOST=$CTL_HOST
CTL_ADDR=$CTL_ADDR
SLURM_CONF=$SLURM_CONF_PATH
SLURMCTLD_PORT=$SLURMCTLD_PORT
SLURMD_PORT=$SLURMD_PORT
SLURMDBD_PORT=$SLURMDBD_PORT
MARIADB_PORT=$MARIADB_PORT
MUNGE_SOCKET=$MUNGE_SOCKET
EOF
}

start_munge() {
    (umask 077; mungekey --create --keyfile="$STATE_DIR/munge/munge.key" >/dev/null 2>&1) \
        || (umask 077; head -c 1024 /dev/urandom >"$STATE_DIR/munge/munge.key")
    chmod 600 "$STATE_DIR/munge/munge.key"
    log "starting munged (socket $MUNGE_SOCKET)"
    munged --socket="$MUNGE_SOCKET" --key-file="$STATE_DIR/munge/munge.key" \
        --pid-file="$STATE_DIR/run/munged.pid" --log-file="$STATE_DIR/log/munged.log" \
        --seed-file="$STATE_DIR/munge/munged.seed" --num-threads=10 --force >>"$STATE_DIR/log/munged.log" 2>&1 9>&- \
        || { tail -n 20 "$STATE_DIR/log/munged.log" >&2; return 1; }
    wait_for "munged" "$STATE_DIR/log/munged.log" \
        bash -c "munge --socket='$MUNGE_SOCKET' -n | unmunge --socket='$MUNGE_SOCKET'"
}

mariadb_client() { mariadb --no-defaults --socket="$STATE_DIR/mysql/mysqld.sock" -u root "$@"; }

start_mariadb() {
    log "initialising MariaDB in $STATE_DIR/mysql"
    mariadb-install-db --no-defaults --user=root --datadir="$STATE_DIR/mysql/data" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$STATE_DIR/log/mariadb-install.log" 2>&1 \
        || { tail -n 20 "$STATE_DIR/log/mariadb-install.log" >&2; return 1; }
    log "starting mariadbd on 127.0.0.1:$MARIADB_PORT"
    setsid mariadbd --no-defaults --user=root --datadir="$STATE_DIR/mysql/data" \
        --socket="$STATE_DIR/mysql/mysqld.sock" --port="$MARIADB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$STATE_DIR/run/mariadbd.pid" --log-error="$STATE_DIR/log/mariadbd.log" \
        --skip-name-resolve --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 9>&- &
    # Recorded now, not when mariadbd gets to it, so that a failing `up` can stop it too.
    # (Without job control the background job is no group leader: setsid execs in place.)
    echo "$!" >"$STATE_DIR/run/mariadbd.pid"
    wait_for "mariadbd" "$STATE_DIR/log/mariadbd.log" \
        mariadb-admin --no-defaults --socket="$STATE_DIR/mysql/mysqld.sock" -u root ping
    mariadb_client -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_slurmdbd() {
    log "starting slurmdbd on port $SLURMDBD_PORT"
    slurm slurmdbd >>"$STATE_DIR/log/slurmdbd.log" 2>&1 9>&- \
        || { tail -n 20 "$STATE_DIR/log/slurmdbd.log" >&2; return 1; }
    wait_for "slurmdbd" "$STATE_DIR/log/slurmdbd.log" slurm sacctmgr -n show cluster
    slurm sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
}

start_slurmctld() {
    log "starting slurmctld on $CTL_ADDR:$SLURMCTLD_PORT"
    slurm slurmctld >>"$STATE_DIR/log/slurmctld.log" 2>&1 9>&- \
        || { tail -n 20 "$STATE_DIR/log/slurmctld.log" >&2; return 1; }
    wait_for "slurmctld" "$STATE_DIR/log/slurmctld.log" bash -c "SLURM_CONF='$SLURM_CONF_PATH' scontrol ping | grep -q UP"
}

start_slurmd() {
    local node index=0
    for node in $(node_names); do
        index=$((index + 1))
        log "starting slurmd for $node"
        if [[ "$NODES" == 2 ]]; then
            # `ip netns exec` would remount /sys, and slurmd then fails on cgroups.
            nsenter --net="$(netns_path "$index")" unshare --uts \
                env SLURM_CONF="$SLURM_CONF_PATH" sh -c "hostname $node && exec slurmd -N $node" \
                >>"$STATE_DIR/log/slurmd-$node.log" 2>&1 9>&- \
                || { tail -n 20 "$STATE_DIR/log/slurmd-$node.log" >&2; return 1; }
        else
            slurm slurmd -N "$node" >>"$STATE_DIR/log/slurmd-$node.log" 2>&1 9>&- \
                || { tail -n 20 "$STATE_DIR/log/slurmd-$node.log" >&2; return 1; }
        fi
    done
    wait_for "all nodes idle" "$STATE_DIR/log/slurmctld.log" bash -c \
        "out=\$(SLURM_CONF='$SLURM_CONF_PATH' sinfo -h -N -o '%N %t'); [[ -n \"\$out\" ]] &&
         ! grep -qv ' idle\$' <<<\"\$out\""
    wait_for "sacct" "$STATE_DIR/log/slurmdbd.log" slurm sacct -n -X
}

# ------------------------------------------------------------------ commands ---------

on_up_failure() {
    local status=$?
    trap - EXIT
    set +e
    log "bringing the cluster up failed (status $status); stopping what was started" \
        "(logs kept in $STATE_DIR/log)"
    KEEP=1 cmd_down_locked
    exit 1
}

cmd_up() {
    if is_up; then
        log "already up (state dir $STATE_DIR)"; return 0
    fi
    ensure_packages
    if [[ -d "$STATE_DIR" ]]; then
        log "cleaning a stale state dir $STATE_DIR"
        cmd_down_locked
    fi
    [[ "$NODES" == 1 ]] || reclaim_leftover_network
    local started=$SECONDS
    # From here on any failing command (set -e) ends in on_up_failure, which undoes it all.
    trap on_up_failure EXIT
    mkdir -p "$STATE_DIR"/{etc,run,log,munge,mysql,spool/ctld}
    chmod 700 "$STATE_DIR/munge"
    [[ "$NODES" == 1 ]] || pick_subnet
    write_configs
    if [[ "$NODES" == 2 ]]; then setup_network; fi
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    trap - EXIT
    log "up in $((SECONDS - started))s: $NODES node(s) [$(node_names)], partition $PARTITION"
    log "use it with: eval \"\$($0 env --state-dir $STATE_DIR)\""
}

cmd_down_locked() {
    # Cancel jobs first so that their steps exit and accounting records them.
    if pid_from_file "$STATE_DIR/run/slurmctld.pid" >/dev/null; then
        local jobs
        jobs=$(slurm squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
        if [[ -n "${jobs// /}" ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            slurm scancel $jobs 2>/dev/null || true
            local deadline=$((SECONDS + GRACE_S))
            while [[ -n "$(slurm squeue -h -o %A 2>/dev/null)" ]] && (( SECONDS < deadline )); do sleep 0.3; done
        fi
    fi
    if [[ "$KEEP" == 1 ]]; then
        # The state is kept, so order matters: slurmctld reports to slurmdbd, which writes to
        # MariaDB; all need munged.
        stop_pid_files "slurmctld and slurmd" "$STATE_DIR/run/slurmctld.pid" "$STATE_DIR"/run/slurmd-*.pid
        stop_leftover_stepds
        stop_pid_files slurmdbd "$STATE_DIR/run/slurmdbd.pid"
        stop_pid_files "mariadbd and munged" "$STATE_DIR/run/mariadbd.pid" "$STATE_DIR/run/munged.pid"
    else
        # Nothing is kept: all daemons at once (about 3 s, where one after another takes 8).
        stop_pid_files "the daemons" "$STATE_DIR"/run/*.pid
        stop_leftover_stepds
    fi
    # The network is global (fixed names), so only tear down the one this state dir made.
    if [[ -e "$STATE_DIR/run/network-created" ]] || grep -qF "$HOSTS_MARKER" "$HOSTS_FILE" 2>/dev/null; then
        teardown_network
        rm -f "$STATE_DIR/run/network-created"
    fi
    if [[ "$KEEP" == 1 ]]; then
        log "down; state kept in $STATE_DIR"
    elif [[ -d "$STATE_DIR" ]]; then
        rm -rf "$STATE_DIR"
        log "down; removed $STATE_DIR"
    fi
}

cmd_status() {
    if [[ ! -f "$CLUSTER_ENV" ]]; then
        echo "no local cluster in $STATE_DIR"; return 1
    fi
    local healthy=0 name pid
    echo "state dir: $STATE_DIR"
    for name in $(daemon_names); do
        if pid=$(pid_from_file "$STATE_DIR/run/$name.pid"); then
            printf '  %-14s up (pid %s)\n' "$name" "$pid"
        else
            printf '  %-14s DOWN\n' "$name"; healthy=1
        fi
    done
    slurm sinfo || healthy=1
    if [[ "$(cluster_fact NODES)" == 2 ]]; then echo "node link: $(link_shape)"; fi
    if slurm sinfo -h -N -o '%t' 2>/dev/null | grep -Eq 'down|drain|fail|unk'; then healthy=1; fi
    return $healthy
}

cmd_env() {
    echo "export SLURM_CONF=$SLURM_CONF_PATH"
    echo "export SLURM_LOCAL_STATE=$STATE_DIR"
}

main() {
    parse_args "$@"
    case "$COMMAND" in
        up|down)
            if [[ "$COMMAND" == down && ! -d "$STATE_DIR" ]]; then
                log "not up (no $STATE_DIR)"; return 0
            fi
            if [[ $EUID -ne 0 ]]; then
                log "'$COMMAND' of the local cluster needs root (daemons as root, network namespaces)"
                exit 3
            fi
            mkdir -p "$(dirname "$GLOBAL_LOCK")"
            # fd 9 holds the lock; every daemon is started with 9>&- so none inherits it.
            exec 9>"$GLOBAL_LOCK"
            flock -w 300 9 || die "could not lock $GLOBAL_LOCK within 300s"
            if [[ "$COMMAND" == up ]]; then cmd_up; else cmd_down_locked; fi ;;
        status) cmd_status ;;
        env) cmd_env ;;
        shape|unshape)
            [[ $EUID -eq 0 ]] || { log "'$COMMAND' needs root (tc in the node namespaces)"; exit 3; }
            [[ -f "$CLUSTER_ENV" && "$(cluster_fact NODES)" == 2 ]] \
                || die "'$COMMAND' needs the 2-node cluster (up --nodes 2) in $STATE_DIR"
            if [[ "$COMMAND" == shape ]]; then shape_link "$RATE" "$BURST" "$LINK_LATENCY"; else unshape_link; fi ;;
        *) usage_error "unknown command '$COMMAND'" ;;
    esac
}

main "$@"
