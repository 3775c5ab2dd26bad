#!/usr/bin/env bash
# What per-request statistics cost the data plane: requests/s of the same build
# with recording on, compiled out (`--features no-request-stats`), and on with the
# access log written (to /dev/null), measured in one run, interleaved (on, off, log,
# on, off, log, ...), medians reported. While the "on" proxy is saturated it also
# times GET /stats and GET /metrics on the admin port.
#
# Topology on a 2-core machine: proxy (1 shard) pinned to CPU 1; wrk and two
# `ringlb origin` pinned to CPU 0. Loopback only; every run is bounded.
#
#   bench/stats-cost.sh                 # 3 rounds of 5 s per variant
#   ROUNDS=5 DURATION=10 bench/stats-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || { echo "stats-cost.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "stats-cost.sh needs curl" >&2; exit 1; }

echo "building both variants (release) ..." >&2
cargo build --release --quiet
cargo build --release --quiet --features no-request-stats --target-dir target/no-stats
ON=target/release/ringlb
OFF=target/no-stats/release/ringlb

WORK=$(mktemp -d)
PIDS=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap cleanup EXIT

start_origins "$ON" "$WORK/bench.toml"
sed 's/^level = "warn"$/level = "warn"\naccess_log = true/' "$WORK/bench.toml" > "$WORK/bench-log.toml"

# While the "on" proxy is loaded: time GET /stats and /metrics, three each.
time_admin() {
    sleep "$(python3 -c "print($DURATION / 2)")"
    for path in stats metrics; do
        for _ in 1 2 3; do
            curl -s -o /dev/null -w "%{time_total}\n" "http://127.0.0.1:19290/$path" >> "$WORK/admin-$path.times"
        done
    done
}

for round in $(seq 1 "$ROUNDS"); do
    read -r on on_cpu < <(measure_proxy "$ON" "$WORK/bench.toml" time_admin)
    read -r off off_cpu < <(measure_proxy "$OFF" "$WORK/bench.toml")
    read -r log log_cpu < <(measure_proxy "$ON" "$WORK/bench-log.toml")
    echo "round $round: req/s (proxy CPU µs/request): stats on $on ($on_cpu), compiled out $off ($off_cpu), with access log $log ($log_cpu)" >&2
    echo "$on" >> "$WORK/on"; echo "$off" >> "$WORK/off"; echo "$log" >> "$WORK/log"
    echo "$on_cpu" >> "$WORK/on.cpu"; echo "$off_cpu" >> "$WORK/off.cpu"; echo "$log_cpu" >> "$WORK/log.cpu"
done

ON_MED=$(median < "$WORK/on"); ON_CPU=$(median < "$WORK/on.cpu")
OFF_MED=$(median < "$WORK/off"); OFF_CPU=$(median < "$WORK/off.cpu")
LOG_MED=$(median < "$WORK/log"); LOG_CPU=$(median < "$WORK/log.cpu")
RATIO=$(python3 -c "print(f'{$ON_CPU / $OFF_CPU:.3f}')")
LOG_RATIO=$(python3 -c "print(f'{$LOG_CPU / $OFF_CPU:.3f}')")
STATS_MAX=$(sort -g "$WORK/admin-stats.times" | tail -1)
METRICS_MAX=$(sort -g "$WORK/admin-metrics.times" | tail -1)
cat <<TABLE

| variant | proxy CPU µs per request (median) | requests/s (median) |
| --- | --- | --- |
| per-request stats on | $ON_CPU | $ON_MED |
| per-request stats compiled out | $OFF_CPU | $OFF_MED |
| stats on, access log on (to /dev/null) | $LOG_CPU | $LOG_MED |

Medians of $ROUNDS rounds × ${DURATION}s, wrk -t1 -c$CONNS. CPU cost ratios (lower is cheaper):
stats on / off = $RATIO; stats and access log / off = $LOG_RATIO.

| admin endpoint, during the "on" runs | slowest of $((ROUNDS * 3)) (seconds) |
| --- | --- |
| GET /stats | $STATS_MAX |
| GET /metrics | $METRICS_MAX |
TABLE
