#!/usr/bin/env bash
# Checks what the container image is made of, without a Docker daemon: the
# static binary (glibc with crt-static) has no dynamic dependencies, stays under
# a stated size, and serves a request from an empty chroot holding only itself
# and its configuration. Run by CI (profile `static`, a quick build) and by
# scripts/build-image.sh (profile `release`). Needs root (or sudo) for chroot.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-static}"
target=x86_64-unknown-linux-gnu
limit_mib=8

RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --profile "$profile" --target "$target"
dir="$profile"
[ "$profile" = dev ] && dir=debug
bin="target/$target/$dir/ringlb"
stripped="$(mktemp)"
trap 'rm -f "$stripped"' EXIT
# Debug information goes, the symbol table stays: profiles taken in the
# container (GET /debug/profile) name functions.
strip --strip-debug -o "$stripped" "$bin"

fail() { echo "check-static: $*" >&2; exit 1; }

file "$stripped" | grep -q "static" || fail "not statically linked: $(file "$stripped")"
ldd "$stripped" 2>&1 | grep -Eq "not a dynamic executable|statically linked" \
    || fail "ldd finds dependencies: $(ldd "$stripped" 2>&1)"
size=$(stat -c %s "$stripped")
[ "$size" -le $((limit_mib * 1024 * 1024)) ] || fail "$size bytes, over $limit_mib MiB"
echo "check-static: $bin is static, $((size / 1024)) KiB stripped (limit $limit_mib MiB)"

# chroot needs root: sudo (without a password) when not root.
as_root=""
if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || fail "the chroot test needs root or passwordless sudo"
    as_root="sudo -n"
fi
root="$(mktemp -d)"
origin_pid=""
proxy_pid=""
cleanup() {
    [ -n "$proxy_pid" ] && $as_root pkill -P "$proxy_pid" 2>/dev/null || true
    [ -n "$proxy_pid" ] && $as_root kill "$proxy_pid" 2>/dev/null || true
    [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null || true
    rm -rf "$root" "$root.log" "$stripped"
}
trap cleanup EXIT
# Ports the check picks from the kernel's ephemeral range.
ports=($(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'))
origin_port=${ports[0]}; proxy_port=${ports[1]}; admin_port=${ports[2]}
mkdir -p "$root/etc/ringlb"
cp "$stripped" "$root/ringlb"
cat > "$root/etc/ringlb/ringlb.toml" <<TOML
[server]
listen = "127.0.0.1:$proxy_port"
shards = 1
[admin]
listen = "127.0.0.1:$admin_port"
[health_check]
kind = "none"
[[backends]]
name = "app1"
address = "127.0.0.1:$origin_port"
TOML
# The chroot holds the binary and its configuration, nothing else.
[ "$(find "$root" -type f | wc -l)" -eq 2 ] || fail "the chroot holds more than two files"
"$stripped" origin --listen "127.0.0.1:$origin_port" --name app1 >/dev/null 2>&1 &
origin_pid=$!
$as_root chroot "$root" /ringlb run -c /etc/ringlb/ringlb.toml >"$root.log" 2>&1 &
proxy_pid=$!
answer=""
for _ in $(seq 100); do
    answer="$(curl -s --max-time 2 "http://127.0.0.1:$proxy_port/" || true)"
    [ -n "$answer" ] && break
    sleep 0.1
done
[ "$answer" = "app1" ] || fail "no answer through the chroot'ed ringlb: '$answer'; its log: $(cat "$root.log")"
echo "check-static: served a request from an empty chroot ($(head -1 "$root.log" | cut -c1-100)...)"
