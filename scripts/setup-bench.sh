#!/usr/bin/env bash
# Installs what the benchmarks need on a fresh Debian machine: wrk, HAProxy and
# nginx with its stream module (Debian packages), curl, python3 and openssl (the
# TLS benchmark's certificates and s_time), h2load (nghttp2-client, the HTTP/2
# benchmark's client), and oha and just (crates.io, since
# Debian 12 does not package them). Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
for tool in wrk haproxy nginx curl python3 openssl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
# nginx's stream module (TCP proxying, for bench/tunnels.py) is a package of its own.
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The packaged nginx and HAProxy services are not needed: benchmarks start their own.
for service in nginx haproxy; do
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl stop "$service" 2>/dev/null || true
    fi
done
command -v oha >/dev/null 2>&1 || cargo install --locked oha
command -v just >/dev/null 2>&1 || cargo install --locked just
echo "benchmark tools: $(wrk --version 2>&1 | head -1); $(haproxy -v | head -1); $(nginx -v 2>&1); $(openssl version); $(oha --version); $(just --version)"
