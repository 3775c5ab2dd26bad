#!/usr/bin/env bash
# Builds the container image: a statically linked ringlb (glibc with
# crt-static, release profile), stripped of debug information and checked by scripts/check-static.sh,
# then `docker build` of the Dockerfile (FROM scratch). Without a Docker daemon
# it stops after the binary and says so.
#
#   scripts/build-image.sh [TAG]     (default: ringlb:VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
tag="${1:-ringlb:$version}"

scripts/check-static.sh release
mkdir -p target/image
# Without debug information, with the symbol table (profiles name functions).
strip --strip-debug -o target/image/ringlb target/x86_64-unknown-linux-gnu/release/ringlb
echo "build-image: target/image/ringlb ($(( $(stat -c %s target/image/ringlb) / 1024 )) KiB)"

if ! command -v docker >/dev/null 2>&1; then
    echo "build-image: docker is not installed; the binary is ready, the image is not built" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "build-image: no Docker daemon answers (docker info failed); the binary is ready, the image is not built" >&2
    exit 1
fi
docker build -t "$tag" .
echo "build-image: $tag"
