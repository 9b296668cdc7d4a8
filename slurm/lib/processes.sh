# Process helpers for slurm/local-cluster.sh (sourced, not run): find and stop the
# cluster's daemons by their pid files, escalating from TERM to KILL.
# shellcheck shell=bash

pid_from_file() {  # prints the pid if the file names a live process
    local file="$1" pid
    [[ -f "$file" ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

descendants() {  # all descendants of the given pids, children first listed after parents
    local frontier=("$@") next pid
    while [[ ${#frontier[@]} -gt 0 ]]; do
        next=()
        for pid in "${frontier[@]}"; do
            while read -r child; do next+=("$child"); echo "$child"; done \
                < <(ps -e -o pid=,ppid= | awk -v p="$pid" '$2 == p {print $1}')
        done
        frontier=("${next[@]+"${next[@]}"}")
    done
}

stop_pids() {  # TERM, wait up to GRACE_S, then KILL whatever is left
    local label="$1"; shift
    local pids=() pid waited=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && pids+=("$pid"); done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    log "stopping $label (pids ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    while (( waited < GRACE_S * 10 )); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        (( alive )) || { log "$label stopped after $((waited / 10)).$((waited % 10))s"; return 0; }
        sleep 0.1; waited=$((waited + 1))
    done
    log "$label did not stop after ${GRACE_S}s; sending KILL"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.2
}

stop_pid_files() {  # stop_pid_files LABEL FILE...: stop the daemons named by pid files together
    local label="$1" file pid pids=(); shift
    for file in "$@"; do
        if pid=$(pid_from_file "$file"); then pids+=("$pid"); fi
    done
    [[ ${#pids[@]} -gt 0 ]] && stop_pids "$label" "${pids[@]}"
    rm -f "$@"
}

stop_leftover_stepds() {
    # A slurmstepd can outlive its slurmd; ours inherited SLURM_CONF pointing into the state dir.
    local pid stepds=()
    for pid in $(pgrep -x slurmstepd || true); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF_PATH"; then
            stepds+=("$pid")
        fi
    done
    [[ ${#stepds[@]} -gt 0 ]] || return 0
    local tree
    mapfile -t tree < <(descendants "${stepds[@]}")
    stop_pids "leftover slurmstepd and their jobs" "${stepds[@]}" "${tree[@]+"${tree[@]}"}"
}
