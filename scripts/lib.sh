# Shell helpers shared by scripts/chaos.sh, bench/stats-cost.sh and
# bench/profile-cost.sh (sourced).
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

# start_origins BIN CONFIG: two `BIN origin` on CPU 0 (127.0.0.1:19201 and
# :19202), added to PIDS, and CONFIG written: a one-shard proxy on
# 127.0.0.1:19280 (admin :19290, as measure_proxy expects) in front of them.
start_origins() {
    local bin=$1 config=$2
    taskset -c 0 "$bin" origin --listen 127.0.0.1:19201 --name o1 >/dev/null 2>&1 & PIDS+=($!)
    taskset -c 0 "$bin" origin --listen 127.0.0.1:19202 --name o2 >/dev/null 2>&1 & PIDS+=($!)
    wait_port 19201; wait_port 19202
    cat > "$config" <<TOML
[server]
listen = "127.0.0.1:19280"
shards = 1
[admin]
listen = "127.0.0.1:19290"
[logging]
level = "warn"
[health_check]
kind = "none"
[[backends]]
name = "o1"
address = "127.0.0.1:19201"
[[backends]]
name = "o2"
address = "127.0.0.1:19202"
TOML
}

# utime+stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# measure_proxy BIN CONFIG [HOOK]: runs `BIN run --config CONFIG` pinned to CPU 1
# (its listener must be 127.0.0.1:19280), warms it up, then loads it with wrk
# (CPU 0, CONNS connections, DURATION seconds) while HOOK, a shell function if
# given, runs beside the load (in the background; the proxy's CPU is read when
# the load ends, and the proxy stopped once HOOK is done too). Prints
# "requests/s proxy_cpu_us_per_request".
measure_proxy() {
    local bin=$1 config=$2 hook=${3:-}
    taskset -c 1 "$bin" run --config "$config" >/dev/null 2>"$WORK/proxy.log" &
    local proxy=$!
    wait_port 19280
    taskset -c 0 wrk -t1 -c"$CONNS" -d1s http://127.0.0.1:19280/ >/dev/null
    local ticks_before
    ticks_before=$(cpu_ticks "$proxy")
    taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" http://127.0.0.1:19280/ > "$WORK/wrk.out" &
    local load=$! beside=""
    if [ -n "$hook" ]; then "$hook" & beside=$!; fi
    wait "$load"
    local ticks_after requests
    ticks_after=$(cpu_ticks "$proxy")
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    local hook_status=0
    if [ -n "$beside" ]; then wait "$beside" || hook_status=$?; fi
    kill "$proxy"; wait "$proxy" 2>/dev/null || true
    local rps cpu_us
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
    cpu_us=$(python3 -c "print(f'{($ticks_after - $ticks_before) / $(getconf CLK_TCK) * 1e6 / $requests:.2f}')")
    if [ "$hook_status" -ne 0 ]; then
        echo "measure_proxy: $hook failed (exit $hook_status); proxy log: $(tail -3 "$WORK/proxy.log")" >&2
        return 1
    fi
    echo "$rps $cpu_us"
}
