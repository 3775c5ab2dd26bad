#!/usr/bin/env bash
# What `GET /debug/profile` costs the data plane: proxy CPU per request and
# requests/s of a build without the profiler (`--no-default-features`), of the
# default build with `admin.profiling = false`, and of the default build while a
# profile samples it (from when the load starts to after it ends), measured in
# one run, interleaved (without, off, profiling, without, ...), medians reported.
#
# Topology on a 2-core machine: proxy (1 shard) pinned to CPU 1; wrk and two
# `ringlb origin` pinned to CPU 0. Loopback only; every run is bounded.
#
#   bench/profile-cost.sh                 # 5 rounds of 5 s per variant
#   ROUNDS=7 DURATION=10 bench/profile-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || { echo "profile-cost.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "profile-cost.sh needs curl" >&2; exit 1; }

echo "building both variants (release) ..." >&2
cargo build --release --quiet
cargo build --release --quiet --no-default-features --target-dir target/no-profiling
WITH=target/release/ringlb
WITHOUT=target/no-profiling/release/ringlb

WORK=$(mktemp -d)
PIDS=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap cleanup EXIT

start_origins "$WITH" "$WORK/off.toml"
sed 's/^listen = "127.0.0.1:19290"$/listen = "127.0.0.1:19290"\nprofiling = true/' "$WORK/off.toml" > "$WORK/on.toml"

# A profile from the start of the load to past its end; its samples are kept.
take_profile() {
    curl -sf --max-time $((DURATION + 30)) -o "$WORK/profile.folded" \
        "http://127.0.0.1:19290/debug/profile?seconds=$((DURATION + 1))&format=folded"
    awk '{n += $NF} END {print n + 0}' "$WORK/profile.folded" >> "$WORK/samples"
}

for round in $(seq 1 "$ROUNDS"); do
    read -r without without_cpu < <(measure_proxy "$WITHOUT" "$WORK/off.toml")
    read -r off off_cpu < <(measure_proxy "$WITH" "$WORK/off.toml")
    read -r on on_cpu < <(measure_proxy "$WITH" "$WORK/on.toml" take_profile)
    echo "round $round: req/s (proxy CPU µs/request): without the profiler $without ($without_cpu), built in and off $off ($off_cpu), profiling $on ($on_cpu), $(tail -1 "$WORK/samples") samples" >&2
    echo "$without" >> "$WORK/without"; echo "$off" >> "$WORK/off"; echo "$on" >> "$WORK/on"
    echo "$without_cpu" >> "$WORK/without.cpu"; echo "$off_cpu" >> "$WORK/off.cpu"; echo "$on_cpu" >> "$WORK/on.cpu"
done

WITHOUT_MED=$(median < "$WORK/without"); WITHOUT_CPU=$(median < "$WORK/without.cpu")
OFF_MED=$(median < "$WORK/off"); OFF_CPU=$(median < "$WORK/off.cpu")
ON_MED=$(median < "$WORK/on"); ON_CPU=$(median < "$WORK/on.cpu")
SAMPLES=$(median < "$WORK/samples")
cat <<TABLE

| variant | proxy CPU µs per request (median) | requests/s (median) |
| --- | --- | --- |
| built without the profiler | $WITHOUT_CPU | $WITHOUT_MED |
| built in, admin.profiling = false | $OFF_CPU | $OFF_MED |
| profiling (99 Hz, whole run) | $ON_CPU | $ON_MED |

Medians of $ROUNDS rounds × ${DURATION}s, wrk -t1 -c$CONNS, one shard on its own core.
CPU ratios: built in and off / without = $(python3 -c "print(f'{$OFF_CPU / $WITHOUT_CPU:.3f}')"); profiling / without = $(python3 -c "print(f'{$ON_CPU / $WITHOUT_CPU:.3f}')").
Samples per profile (median): $SAMPLES over $((DURATION + 1)) s.
TABLE
