#!/usr/bin/env python3
"""Side-by-side benchmark: ringlb vs HAProxy vs nginx in one topology.

Each proxy gets the same core (CPU 1 on a 2-core machine), one worker/thread/shard,
round-robin over the same two `ringlb origin` servers, upstream keep-alive on. wrk,
oha and the origins run on CPU 0. Rounds are interleaved (ringlb, haproxy, nginx,
ringlb, ...) and medians are reported, so a noisy machine shifts all alike.

Figures per proxy and scenario:
  - requests/s at saturation (wrk -t1 -c64);
  - proxy CPU time per request: utime+stime of the proxy's processes (from /proc)
    over the wrk run, divided by the requests wrk completed;
  - peak RSS of the proxy's processes;
  - p50/p99/p99.9 latency at a fixed offered rate (oha -q with latency correction),
    keep-alive scenario only;
  - RSS per idle keep-alive client connection: 8,000 of them by default (the
    machines' hard file limit of 20,000 allows no more for HAProxy), opened one
    after another on the fresh proxy, one request each, then held.

Scenarios: small responses with keep-alive (the headline), a new connection per
request (Connection: close), and 64 KiB responses.

Run `scripts/setup-bench.sh` first (wrk, haproxy, nginx, oha). Loopback only;
every step is bounded. Writes bench/results/compare-<time>.{json,md} and prints the
markdown table.
"""

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORIGIN_PORTS = [19301, 19302]
PROXY_PORT = 19380
ADMIN_PORT = 19390
PROXIES = ["ringlb", "haproxy", "nginx"]
SCENARIOS = {
    "keep-alive, small": ("/", []),
    "new connection per request": ("/", ["-H", "Connection: close"]),
    "keep-alive, 64 KiB": ("/bytes/65536", []),
}


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def wait_port_closed(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(0.05)
        except OSError:
            return


def tree(pid):
    """pid and its descendants (nginx and HAProxy may fork workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def memory_kib(pids, field):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def configs(work, ringlb_bin):
    backends = "".join(
        f'[[backends]]\nname = "o{i}"\naddress = "127.0.0.1:{p}"\n'
        for i, p in enumerate(ORIGIN_PORTS)
    )
    (work / "ringlb.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{PROXY_PORT}"\nshards = 1\n'
        f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"\n[logging]\nlevel = "warn"\n'
        f'[health_check]\nkind = "none"\n{backends}'
    )
    servers = "".join(
        f"    server o{i} 127.0.0.1:{p}\n" for i, p in enumerate(ORIGIN_PORTS)
    )
    (work / "haproxy.cfg").write_text(
        "global\n    nbthread 1\n    maxconn 9000\n\n"
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
        "    timeout server 30s\n    timeout http-keep-alive 60s\n\n"
        f"frontend fe\n    bind 127.0.0.1:{PROXY_PORT}\n    default_backend be\n\n"
        f"backend be\n    balance roundrobin\n    http-reuse always\n{servers}"
    )
    upstreams = "".join(f"        server 127.0.0.1:{p};\n" for p in ORIGIN_PORTS)
    (work / "nginx.conf").write_text(
        f"worker_processes 1;\ndaemon off;\nerror_log {work}/nginx-error.log warn;\n"
        f"pid {work}/nginx.pid;\nworker_rlimit_nofile 19000;\n"
        "events { worker_connections 18000; }\n"
        "http {\n    access_log off;\n"
        f"    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;\n"
        f"    fastcgi_temp_path {work}/fastcgi;\n    uwsgi_temp_path {work}/uwsgi;\n"
        f"    scgi_temp_path {work}/scgi;\n    keepalive_requests 1000000;\n"
        f"    upstream origins {{\n{upstreams}        keepalive 64;\n    }}\n"
        f"    server {{\n        listen 127.0.0.1:{PROXY_PORT};\n"
        "        location / {\n            proxy_pass http://origins;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_buffering off;\n        }\n    }\n}\n"
    )
    return {
        "ringlb": [str(ringlb_bin), "run", "--config", str(work / "ringlb.toml")],
        "haproxy": ["haproxy", "-f", str(work / "haproxy.cfg"), "-db"],
        "nginx": ["nginx", "-p", str(work), "-c", str(work / "nginx.conf")],
    }


def wrk(path, headers, seconds, conns):
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", *headers,
         f"http://127.0.0.1:{PROXY_PORT}{path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return rps, requests, (int(errors.group(1)) if errors else 0), (socket_errors.group(1) if socket_errors else "")


def oha_latency(rate, seconds):
    if not shutil.which("oha"):
        return None
    out = subprocess.run(
        ["taskset", "-c", "0", "oha", "-z", f"{seconds}s", "-q", str(rate), "-c", "32",
         "--latency-correction", "--no-tui", "--output-format", "json",
         f"http://127.0.0.1:{PROXY_PORT}/"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout
    data = json.loads(out)
    p = data["latencyPercentiles"]
    return {k: p[k] * 1000.0 for k in ("p50", "p99", "p99.9")}


def idle_rss_bytes(pids, count):
    """RSS per idle keep-alive connection: open `count` connections one after another,
    each carrying one request and response, and hold them all. Measured on a fresh
    proxy process before any load, so neither memory left over from a burst nor
    memory the allocator kept from earlier scenarios blurs the figure. A few
    requests first let the proxy touch what it allocates once (ringlb's latency
    histograms, for one), which is not a per-connection cost."""
    with socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=10) as warm:
        for _ in range(100):
            warm.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
                data += warm.recv(65536)
    time.sleep(1.5)  # statistics reports reach ringlb's control thread every second
    before = memory_kib(pids, "VmRSS")
    conns = []
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=10)
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            conns.append(s)
        time.sleep(0.5)  # let the proxy settle its buffers
        after = memory_kib(pids, "VmRSS")
    finally:
        for s in conns:
            s.close()
    return (after - before) * 1024 / count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rate", type=int, default=10000, help="oha's fixed offered rate")
    # 8,000: these machines' hard RLIMIT_NOFILE is 20,000, and HAProxy needs two
    # descriptors per connection it may hold (maxconn 9,000).
    ap.add_argument("--idle", type=int, default=8000, help="idle connections for the RSS figure")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    for tool in ["wrk", "taskset"] + [p for p in args.proxies.split(",") if p != "ringlb"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup-bench.sh")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    ringlb_bin = ROOT / "target" / "release" / "ringlb"
    work = Path(tempfile.mkdtemp(prefix="ringlb-bench-"))
    for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / d).mkdir()
    commands = configs(work, ringlb_bin)
    origins = [
        subprocess.Popen(["taskset", "-c", "0", str(ringlb_bin), "origin", "--listen",
                          f"127.0.0.1:{p}", "--name", f"o{i}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, p in enumerate(ORIGIN_PORTS)
    ]
    results = {p: {} for p in args.proxies.split(",")}
    try:
        for p in ORIGIN_PORTS:
            wait_port(p)
        for rnd in range(1, args.rounds + 1):
            for proxy in results:
                wait_port_closed(PROXY_PORT)
                proc = subprocess.Popen(["taskset", "-c", "1", *commands[proxy]],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(PROXY_PORT)
                    pids = tree(proc.pid)
                    if args.idle:
                        idle = idle_rss_bytes(pids, args.idle)
                        results[proxy].setdefault("keep-alive, small", {}).setdefault("idle_bytes", []).append(idle)
                    for name, (path, headers) in SCENARIOS.items():
                        wrk(path, headers, 1, args.conns)  # warm-up
                        t0 = cpu_ticks(pids)
                        rps, requests, non2xx, socket_errors = wrk(path, headers, args.duration, args.conns)
                        cpu_us = (cpu_ticks(pids) - t0) / os.sysconf("SC_CLK_TCK") * 1e6 / max(requests, 1)
                        row = results[proxy].setdefault(name, {})
                        row.setdefault("rps", []).append(rps)
                        row.setdefault("cpu_us", []).append(cpu_us)
                        row.setdefault("errors", []).append(non2xx)
                        print(f"round {rnd} {proxy:8} {name:28} {rps:10.0f} req/s {cpu_us:7.2f} µs/req"
                              f" non-2xx {non2xx} {socket_errors}", file=sys.stderr)
                    head = results[proxy].setdefault("keep-alive, small", {})
                    latency = oha_latency(args.rate, args.duration)
                    if latency:
                        for k, v in latency.items():
                            head.setdefault(k, []).append(v)
                    head.setdefault("peak_rss_kib", []).append(memory_kib(tree(proc.pid), "VmHWM"))
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    finally:
        for o in origins:
            o.terminate()
        shutil.rmtree(work, ignore_errors=True)

    med = lambda xs: statistics.median(xs) if xs else float("nan")
    lines = [
        f"Medians of {args.rounds} interleaved rounds; wrk -t1 -c{args.conns} -d{args.duration}s; "
        f"proxies on CPU 1, wrk/oha/origins on CPU 0.",
        "",
        "| scenario | proxy | requests/s | proxy CPU µs/request | non-2xx |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in SCENARIOS:
        for proxy in results:
            r = results[proxy][name]
            lines.append(f"| {name} | {proxy} | {med(r['rps']):.0f} | {med(r['cpu_us']):.2f} | {int(sum(r['errors']))} |")
    lines += ["", f"| proxy | p50 ms at {args.rate}/s | p99 ms | p99.9 ms | peak RSS KiB | RSS bytes per idle connection ({args.idle}) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for proxy in results:
        r = results[proxy]["keep-alive, small"]
        lines.append(f"| {proxy} | {med(r.get('p50', [])):.3f} | {med(r.get('p99', [])):.3f} | "
                     f"{med(r.get('p99.9', [])):.3f} | {med(r.get('peak_rss_kib', [])):.0f} | "
                     f"{med(r.get('idle_bytes', [])):.0f} |")
    base = results.get("haproxy", {}).get("keep-alive, small")
    ours = results.get("ringlb", {}).get("keep-alive, small")
    if base and ours:
        lines += ["", f"ringlb / HAProxy, keep-alive small: CPU per request {med(ours['cpu_us']) / med(base['cpu_us']):.2f}x, "
                      f"requests/s {med(ours['rps']) / med(base['rps']):.2f}x"]
    table = "\n".join(lines)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"compare-{stamp}.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    (out_dir / f"compare-{stamp}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
