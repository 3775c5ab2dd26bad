# Shell helpers shared by scripts/chaos.sh and bench/stats-cost.sh (sourced).
# The caller sets up PIDS=() and WORK=$(mktemp -d) and calls `trap cleanup EXIT`.

# Kills every process in PIDS and removes WORK.
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# Waits (at most 10 s) until something listens on 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    return 1
}
