#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each, from their committed corpora:
#   fuzz/run.sh [TARGET|all] [SECONDS]      (default: all, 60 s each)
# New inputs go to a scratch directory; a crash is saved under fuzz/artifacts/ and
# fails the run. `just fuzz` and CI call it. Needs cargo-fuzz (installed if
# missing); builds with RUSTC_BOOTSTRAP=1 so cargo-fuzz's flags work on the stable
# toolchain (the fuzz build only), without sanitizers (the code under test is safe
# Rust: the point is panics and broken invariants).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
targets=(request_head response_head chunked framing config proxy_header h2_request h2_meter)
if [ "${1:-all}" != all ]; then
    targets=("$1")
fi
seconds=${2:-60}
export RUSTC_BOOTSTRAP=1
timeout 1200 cargo fuzz build --sanitizer none --release
failed=0
for target in "${targets[@]}"; do
    work=$(mktemp -d)
    log="$work.log"
    status=0
    timeout $((seconds + 300)) cargo fuzz run --sanitizer none --release "$target" "$work" "corpus/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [ "$status" -eq 0 ]; then
        echo "fuzz: $target: ${seconds} s, ${runs:-?} inputs (${rate:-?}/s), no crash"
    else
        failed=1
        echo "fuzz: $target: FAILED (exit $status) after ${runs:-?} inputs"
        grep -E -A12 "panicked|ERROR|SUMMARY" "$log" | head -40 || tail -40 "$log"
    fi
    rm -rf "$work" "$log"
done
exit "$failed"
