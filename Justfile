# ringlb tasks. `just check` runs exactly what CI runs.

# The whole stack on one machine: three origins and the balancer, no config needed.
demo:
    cargo run --release -- demo

# The test suite (integration tests start the real proxy on 127.0.0.1:0).
test:
    cargo test

# fmt, clippy and tests: the CI gates.
check:
    bash .ci/run

# The container image: a static binary, checked, then `docker build` (needs a daemon).
image *args:
    scripts/build-image.sh {{args}}

# Validate a configuration file, like `nginx -t`.
check-config file="config/ringlb.toml":
    cargo run --release -- check --config {{file}}

# ringlb vs HAProxy vs nginx, side by side (run scripts/setup-bench.sh once first).
bench *args:
    python3 bench/compare.py {{args}}

# TCP listeners and WebSocket, side by side with HAProxy and nginx (tcp/stream modes).
bench-tunnels:
    python3 bench/tunnels.py

# TLS termination side by side with HAProxy and nginx: keep-alive, full and resumed
# handshakes (ECDSA, RSA), idle memory; needs the release build (not built here).
# `just bench-tls --quick` smoke-tests the script.
bench-tls *args:
    python3 bench/tls.py {{args}}

# HTTP/2 (h2c) side by side with HAProxy and nginx (h2load): CPU per request, small and
# 64 KiB responses, idle memory per connection; needs the release build (not built
# here). `--tls`: HTTP/2 over TLS (ALPN h2). `just bench-h2 --quick` smoke-tests it.
bench-h2 *args:
    python3 bench/h2.py {{args}}

# What per-request statistics cost: stats on vs compiled out, side by side (needs wrk).
bench-stats:
    bench/stats-cost.sh

# What GET /debug/profile costs: built without, built in and off, and while a
# profile runs, side by side (needs wrk).
bench-profile:
    bench/profile-cost.sh

# Microbenchmark: nanoseconds to record one request.
bench-record:
    cargo bench --bench stats_record

# Microbenchmark: nanoseconds per selection, every strategy at 3, 10 and 100 backends.
bench-select:
    cargo bench --bench select

# Microbenchmark: nanoseconds to parse and rewrite a typical request head.
bench-parse:
    cargo bench --bench parse

# Microbenchmark: ns for a listener's router to pick a route, at 1,000 routes and at one.
bench-route:
    cargo bench --bench route

# Faults, floods and a soak against the release build (bench/torture.py): the full
# suite takes about 15 minutes; `just torture --short` is what CI runs (2.5 min);
# `just torture --only flood slowloris` picks scenarios.
torture *args:
    cargo build --release
    python3 bench/torture.py {{args}}

# The 10-minute soak alone: RSS and descriptors under mixed traffic, plotted to
# target/torture/soak-full.svg.
soak:
    cargo build --release
    python3 bench/torture.py --only soak

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) from the committed corpora:
# `just fuzz` runs every target 60 s; `just fuzz request_head 600` one for longer.
fuzz target="all" seconds="60":
    fuzz/run.sh {{target}} {{seconds}}
