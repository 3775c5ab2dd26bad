#!/usr/bin/env bash
# Chaos demo: kill and restart one of three origins under load, and compare the
# success rate seen by clients with ringlb's resilience on (health checks,
# circuit breakers, retries) and off.
#
# It runs the `ringlb demo` topology as separate processes (three `ringlb origin`
# on 127.0.0.1:19101-19103, the balancer on 127.0.0.1:19180) so that an origin can
# really be killed. Loopback only; every step is bounded in time.
#
#   scripts/chaos.sh              # 8 s of load per mode
#   DURATION=20 scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-8}
if [ -z "${RINGLB:-}" ]; then
    echo "building ringlb (release) ..."
    cargo build --release --quiet
fi
BIN=${RINGLB:-target/release/ringlb}
command -v python3 >/dev/null || { echo "chaos.sh needs python3 for its load generator" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap cleanup EXIT

start_origin() { # port name
    "$BIN" origin --listen "127.0.0.1:$1" --name "$2" >/dev/null 2>&1 &
    echo $!
}


write_config() { # file resilient(yes|no)
    local resilient=$2
    cat > "$1" <<TOML
[server]
listen = "127.0.0.1:19180"
shards = 1
[admin]
listen = "127.0.0.1:19190"
[logging]
level = "warn"
[health_check]
kind = "$([ "$resilient" = yes ] && echo http || echo none)"
interval = "500ms"
timeout = "250ms"
unhealthy_threshold = 2
healthy_threshold = 2
[circuit_breaker]
enabled = $([ "$resilient" = yes ] && echo true || echo false)
open_for = "1s"
[retry]
max_retries = $([ "$resilient" = yes ] && echo 2 || echo 0)
[[backends]]
name = "app1"
address = "127.0.0.1:19101"
[[backends]]
name = "app2"
address = "127.0.0.1:19102"
[[backends]]
name = "app3"
address = "127.0.0.1:19103"
TOML
}

# A keep-alive load generator: CLIENTS threads for DURATION seconds; prints
# "ok total" on its last line.
LOAD_PY='
import http.client, sys, threading, time
duration, clients = float(sys.argv[1]), int(sys.argv[2])
ok = total = 0
lock = threading.Lock()
def run():
    global ok, total
    end = time.time() + duration
    conn = None
    while time.time() < end:
        good = False
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", 19180, timeout=5)
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            good = r.status == 200
            if r.getheader("connection", "").lower() == "close":
                conn.close(); conn = None
        except Exception:
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            total += 1
            ok += good
threads = [threading.Thread(target=run) for _ in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(ok, total)
'

run_mode() { # resilient(yes|no) label
    local config="$WORK/chaos-$1.toml"
    write_config "$config" "$1"
    local o1 o2 o3 proxy load
    o1=$(start_origin 19101 app1); o2=$(start_origin 19102 app2); o3=$(start_origin 19103 app3)
    PIDS+=("$o1" "$o2" "$o3")
    wait_port 19101; wait_port 19102; wait_port 19103
    "$BIN" run --config "$config" 2>"$WORK/proxy-$1.log" &
    proxy=$!
    PIDS+=("$proxy")
    wait_port 19180 || { cat "$WORK/proxy-$1.log" >&2; exit 1; }
    python3 -c "$LOAD_PY" "$DURATION" "$CLIENTS" > "$WORK/load-$1.out" &
    load=$!
    sleep "$(python3 -c "print($DURATION * 0.25)")"
    kill "$o2"; wait "$o2" 2>/dev/null || true
    echo "  $2: killed app2"
    sleep "$(python3 -c "print($DURATION * 0.4)")"
    o2=$(start_origin 19102 app2); PIDS+=("$o2")
    echo "  $2: restarted app2"
    wait "$load"
    read -r ok total < <(tail -n 1 "$WORK/load-$1.out")
    kill "$proxy" "$o1" "$o2" "$o3" 2>/dev/null || true
    wait "$proxy" "$o1" "$o2" "$o3" 2>/dev/null || true
    python3 -c "
ok, total = $ok, $total
print(f'  $2: {ok}/{total} requests succeeded ({100.0 * ok / max(total, 1):.2f}%)')"
}

echo "Killing and restarting one of three origins under load ($CLIENTS clients, ${DURATION}s per mode):"
run_mode yes "with health checks, breakers and retries"
run_mode no  "without them (plain round-robin)    "
