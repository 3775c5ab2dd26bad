#!/usr/bin/env python3
"""HTTP/2 side by side: ringlb vs HAProxy vs nginx serving h2c (HTTP/2 with prior
knowledge, no TLS), or with --tls HTTP/2 over TLS (ALPN h2, bench/tls.py's ECDSA
certificate), in front of HTTP/1.1 origins.

The topology, pinning and accounting of bench/compare.py and bench/tls.py (whose
helpers this script imports): each proxy gets the same cores (--proxy-cores, CPU 1 by
default) and one worker/thread/shard per core, round-robin over the same two
`ringlb origin` servers with upstream keep-alive; h2load and the origins run on the
other cores (--load-cores, CPU 0). Rounds are interleaved (ringlb, haproxy, nginx,
ringlb, ...); medians are reported with the ratios ringlb/HAProxy and ringlb/nginx.

Each proxy's h2c listener: ringlb `protocol = "h2c"`; HAProxy `bind ... proto h2`;
nginx `listen ... http2` (prior knowledge on a plain listener). All allow 100
concurrent streams (HAProxy's and nginx's default; ringlb's fixed limit).

THE comparable figure is the proxy's CPU per request: utime+stime of the proxy's
processes (from /proc) over the measured run, divided by the requests h2load
completed.

Scenarios:
  1. h2load -t1 -c16 -m32 -D N on / and on /bytes/65536 (16 connections, 32
     streams in flight on each) after a 1 s warm-up -> requests/s, proxy CPU µs per
     request, failed requests.
  2. idle memory: on the freshly started proxy, --idle connections opened one after
     another by this script (the preface, an empty SETTINGS, one GET / whose response
     is read to its end), then all held; RSS growth of the proxy's processes per
     connection 0.5 s and 3 s after the last one opened.

With --upstream h2 the origins speak HTTP/2 too (`ringlb origin --h2c`) and each
proxy forwards over HTTP/2 connections to them: ringlb `upstream.protocol = "h2"`,
HAProxy `server ... proto h2`, nginx `grpc_pass` (its only HTTP/2 upstream; it
works for any HTTP/2 backend). No idle-memory scenario then (it measures the client
side, which is the same).

Nothing is built here: ringlb is --bin (target/release/ringlb by default). Needs
h2load (Debian's nghttp2-client), haproxy, nginx and taskset
(scripts/setup-bench.sh). Loopback only; every step is bounded. With the defaults (3
rounds of 10 s runs) a run takes about 5 minutes. Writes
bench/results/h2-<time>.{json,md} (not with --quick, a smoke test of the script)
and prints the markdown.
"""

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True
import compare  # noqa: E402
import tls  # noqa: E402
import verdict  # noqa: E402
from compare import cpu_list, cpu_ticks, med, memory_kib, tree, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ORIGIN_PORTS = compare.ORIGIN_PORTS
PORT = tls.TLS_PORT  # tls.running waits on this port
ADMIN_PORT = compare.ADMIN_PORT
PROXIES = ["ringlb", "haproxy", "nginx"]
LABELS = tls.LABELS
PATHS = {"small": "/", "64 KiB": "/bytes/65536"}
IDLE = "idle memory"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Idle upstream connections each proxy may keep: every stream in flight (16 x 32)
# needs an HTTP/1.1 connection of its own, and HAProxy keeps them all
# (http-reuse always, no pool-max-conn); ringlb (per backend) and nginx
# (keepalive) are given room for all of them too.
POOL = 512


def configs(work, ringlb_bin, workers, io, cert=None, upstream_h2=False):
    """Each proxy's command; with `cert` (tls.certificates' ECDSA triple) HTTP/2
    over TLS with ALPN h2 instead of h2c; with `upstream_h2` HTTP/2 to the origins."""
    backends = ", ".join(f'{{ name = "o{i}", address = "127.0.0.1:{p}" }}'
                         for i, p in enumerate(ORIGIN_PORTS))
    proto = " proto h2" if upstream_h2 else ""
    servers = "".join(f"    server o{i} 127.0.0.1:{p}{proto}\n" for i, p in enumerate(ORIGIN_PORTS))
    if upstream_h2:
        location = "        location / {\n            grpc_pass grpc://origins;\n        }\n"
    else:
        location = ("        location / {\n            proxy_pass http://origins;\n"
                    "            proxy_http_version 1.1;\n"
                    '            proxy_set_header Connection "";\n'
                    "            proxy_buffering off;\n        }\n")
    upstreams = "".join(f"        server 127.0.0.1:{p};\n" for p in ORIGIN_PORTS)
    ringlb_cfg, haproxy_cfg, nginx_cfg = work / "ringlb.toml", work / "haproxy.cfg", work / "nginx.conf"
    ringlb_cfg.write_text(
        f'[server]\nshards = {workers}\nio = "{io}"\n\n'
        f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"\n\n'
        '[logging]\nlevel = "warn"\n\n'
        f'[[listeners]]\nname = "h2"\naddress = "127.0.0.1:{PORT}"\n'
        + (f'tls = {{ certificates = [ {{ cert = "{cert[0]}", key = "{cert[1]}" }} ], '
           f'default = "{tls.SERVER_NAME}", alpn = ["h2", "http/1.1"] }}\n\n' if cert else 'protocol = "h2c"\n\n') +
        '[[routes]]\nname = "all"\nlistener = "h2"\ncluster = "app"\n\n'
        '[[clusters]]\nname = "app"\nhealth_check = { kind = "none" }\n'
        + ('upstream = { protocol = "h2" }\n' if upstream_h2 else
           f"upstream = {{ max_idle_per_backend = {POOL} }}\n") +
        f"backends = [ {backends} ]\n"
    )
    haproxy_cfg.write_text(
        f"global\n    nbthread {workers}\n    maxconn 9000\n\n"
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
        "    timeout server 30s\n    timeout http-keep-alive 60s\n\n"
        f"frontend fe\n    bind 127.0.0.1:{PORT} "
        + (f"ssl crt {cert[2]} alpn h2,http/1.1\n" if cert else "proto h2\n")
        + "    default_backend be\n\n"
        f"backend be\n    balance roundrobin\n    http-reuse always\n{servers}"
    )
    nginx_cfg.write_text(
        f"worker_processes {workers};\ndaemon off;\nerror_log {work}/nginx-error.log warn;\n"
        f"pid {work}/nginx.pid;\nworker_rlimit_nofile 19000;\n"
        "events { worker_connections 18000; }\n"
        "http {\n    access_log off;\n"
        f"    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;\n"
        f"    fastcgi_temp_path {work}/fastcgi;\n    uwsgi_temp_path {work}/uwsgi;\n"
        f"    scgi_temp_path {work}/scgi;\n    keepalive_requests 1000000;\n"
        f"    upstream origins {{\n{upstreams}        keepalive {POOL};\n    }}\n"
        f"    server {{\n        listen 127.0.0.1:{PORT} {'ssl ' if cert else ''}http2;\n"
        + (f"        ssl_certificate {cert[0]};\n        ssl_certificate_key {cert[1]};\n" if cert else "")
        + location + "    }\n}\n"
    )
    commands = {
        "ringlb": [str(ringlb_bin), "run", "--config", str(ringlb_cfg)],
        "haproxy": ["haproxy", "-f", str(haproxy_cfg), "-db"],
        "nginx": ["nginx", "-p", str(work), "-c", str(nginx_cfg)],
        "checks": {
            "ringlb": [str(ringlb_bin), "check", "--config", str(ringlb_cfg)],
            "haproxy": ["haproxy", "-c", "-f", str(haproxy_cfg)],
            "nginx": ["nginx", "-t", "-p", str(work), "-c", str(nginx_cfg)],
        },
    }
    return commands


SCHEME = "http"  # "https" with --tls


def h2load(path, seconds, load_cores, conns, streams):
    """One h2load run: (requests/s, requests done and succeeded, failed, its summary)."""
    threads = len(cpu_list(load_cores))
    out = subprocess.run(
        ["taskset", "-c", load_cores, "h2load", f"-t{threads}", f"-c{conns}", f"-m{streams}",
         f"-D{seconds}", f"{SCHEME}://127.0.0.1:{PORT}{path}"],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out.stdout)
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out.stdout)
    status = re.search(r"status codes: (.*)", out.stdout)
    if out.returncode != 0 or not rps or not reqs:
        return float("nan"), 0, 1, f"h2load failed (exit {out.returncode}): {(out.stdout + out.stderr).strip()[-300:]}"
    succeeded, failed = int(reqs.group(4)), int(reqs.group(5)) + int(reqs.group(6))
    return float(rps.group(1)), succeeded, failed, f"{reqs.group(0)}; status codes: {status.group(1) if status else '?'}"


def saturate(proc, path, args):
    h2load(path, 1, args.load_cores, args.conns, args.streams)
    pids = tree(proc.pid)
    t0, start = cpu_ticks(pids), time.monotonic()
    rps, done, failed, text = h2load(path, args.duration, args.load_cores, args.conns, args.streams)
    wall = time.monotonic() - start
    cpu_us, sys_us = tls.cpu_since(pids, t0)
    per = max(done, 1)
    return dict(rate=rps, cpu_us=cpu_us / per, sys_us=sys_us / per, busy=cpu_us / (wall * 1e6) * 100,
                errors=failed), text


def h2_get(sock):
    """One GET / on a fresh HTTP/2 connection: the preface, an empty SETTINGS, a
    HEADERS frame with a static-table HPACK block; read until stream 1 ends."""
    authority = f"127.0.0.1:{PORT}".encode()
    block = bytes([0x82, 0x84, 0x86, 0x01, len(authority)]) + authority  # GET / http :authority
    headers = len(block).to_bytes(3, "big") + bytes([0x1, 0x5]) + (1).to_bytes(4, "big") + block
    settings = (0).to_bytes(3, "big") + bytes([0x4, 0x0]) + (0).to_bytes(4, "big")
    sock.sendall(PREFACE + settings + headers)
    data, acked = b"", False
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the response ended")
        data += chunk
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if len(data) < 9 + length:
                break
            kind, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
            data = data[9 + length:]
            if kind == 0x4 and not flags & 0x1 and not acked:
                sock.sendall((0).to_bytes(3, "big") + bytes([0x4, 0x1]) + (0).to_bytes(4, "big"))
                acked = True
            if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
                return


def h2_connect():
    """A connection for the idle scenario: TLS with ALPN h2 under --tls."""
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    if SCHEME == "https":
        ctx = tls.client_context()
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=tls.SERVER_NAME)
    return sock


def idle_rss_bytes(proc, count):
    """compare.idle_rss_bytes over HTTP/2: RSS growth per idle connection that
    carried one request, 0.5 s and 3 s after the last opened."""
    pids = tree(proc.pid)
    for _ in range(20):
        with h2_connect() as warm:
            h2_get(warm)
    time.sleep(1.5)
    before = memory_kib(pids, "VmRSS")
    conns, error = [], None
    try:
        for _ in range(count):
            try:
                s = h2_connect()
            except OSError as e:
                error = str(e)
                break
            try:
                h2_get(s)
            except (OSError, RuntimeError) as e:
                error = str(e)
                s.close()
                break
            conns.append(s)
        opened = len(conns)
        time.sleep(0.5)
        soon = memory_kib(pids, "VmRSS")
        time.sleep(2.5)
        later = memory_kib(pids, "VmRSS")
    finally:
        for s in conns:
            s.close()
    opened = max(opened, 1)
    return (soon - before) * 1024 / opened, (later - before) * 1024 / opened, len(conns), error


def render(results, args, info, notes, command):
    """The markdown report of a run (also from its JSON: --render)."""
    up_h2 = args.get("upstream") == "h2"
    lines = [
        f"## HTTP/2 ({'over TLS, ALPN h2' if args.get('tls') else 'h2c'}{', to HTTP/2 origins' if up_h2 else ''}) "
        "side by side: ringlb, HAProxy and nginx "
        f"({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `{command}`" + (" (a smoke test)" if args['quick'] else ""),
        "",
        f"Machine: {info['cpu']}; Linux `{info['kernel']}`. Versions: {info['ringlb']} (`server.io = "
        f"\"{args['io']}\"`), {info['haproxy']}, {info['nginx']}, {info['h2load']}.",
        "",
        f"Medians of {args['rounds']} interleaved rounds; every proxy with {len(cpu_list(args['proxy_cores']))} worker(s) on CPU "
        f"{args['proxy_cores']}, {'HTTP/2 over TLS (ECDSA P-256, ALPN h2)' if args.get('tls') else 'h2c'} on 127.0.0.1:{PORT}, round-robin over two `ringlb origin`s "
        + ("(`--h2c`: HTTP/2, multiplexed; nginx through `grpc_pass`);" if up_h2 else "(HTTP/1.1, upstream keep-alive);")
        + f" h2load and the origins on CPU {args['load_cores']}. Proxy CPU is utime+stime "
        "of the proxy's processes over the measured run per request; CPU busy is that CPU over the wall "
        "time (100% = one core).",
    ]

    cols = [("requests/s", "rate", "{:.0f}", "med", True),
            ("proxy CPU µs/request", "cpu_us", "{:.2f}", "med", True),
            ("of which kernel", "sys_us", "{:.2f}", "med", True),
            ("proxy CPU busy", "busy", "{:.0f}%", "med", False),
            ("failed requests", "errors", "", "sum", False)]
    threads = len(cpu_list(args['load_cores']))
    for scenario, path in PATHS.items():
        tls.table(lines, results, scenario, f"**{scenario}** (h2load -t{threads} -c{args['conns']} -m{args['streams']} -D{args['duration']} "
                        f"{'https' if args.get('tls') else 'http'}://127.0.0.1:{PORT}{path}, after a 1 s warm-up)", cols)
    if not up_h2:
        tls.table(lines, results, IDLE, f"**{IDLE}** ({args['idle']} HTTP/2 connections, one GET / each, held; RSS growth of the "
                "proxy's processes per connection, on the fresh proxy after 20 warm-up connections)",
          [("bytes per connection, 0.5 s", "soon", "{:.0f}", "med", True),
           ("3 s after the last opened", "later", "{:.0f}", "med", True),
           ("connections opened", "opened", "{:.0f}", "med", False),
           ("failed runs", "errors", "", "sum", False)])
    lines += ["", "Verdicts (bench/verdict.py: proxy CPU per request, the median of per-round "
              "ratios ringlb / other with a 90% bootstrap interval over the paired rounds):", ""]
    for scenario in PATHS:
        for other in ("haproxy", "nginx"):
            ours = results.get("ringlb", {}).get(scenario)
            theirs = results.get(other, {}).get(scenario)
            if ours and theirs:
                cpu = verdict.ratio(ours["cpu_us"], theirs["cpu_us"])
                lines.append(f"- {scenario}, ringlb / {LABELS[other]}: {verdict.describe(cpu, ratio_form=True)}")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured h2load run")
    ap.add_argument("--conns", type=int, default=16, help="h2load connections")
    ap.add_argument("--streams", type=int, default=32, help="h2load streams in flight per connection")
    ap.add_argument("--idle", type=int, default=2000, help="idle HTTP/2 connections for the RSS figure")
    ap.add_argument("--io", default="auto", choices=["auto", "io_uring", "epoll"], help="ringlb's server.io")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--proxy-cores", default="1")
    ap.add_argument("--load-cores", default="0")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "ringlb"))
    ap.add_argument("--quick", action="store_true", help="smoke-test the script: 1 round, 3 s runs, 300 idle")
    ap.add_argument("--tls", action="store_true",
                    help="HTTP/2 over TLS (ALPN h2, bench/tls.py's ECDSA certificate) instead of h2c")
    ap.add_argument("--upstream", default="http1", choices=["http1", "h2"],
                    help="what the proxies speak to the origins (h2: `ringlb origin --h2c`)")
    ap.add_argument("--render", metavar="JSON", help="print the report of an earlier run from its JSON")
    args = ap.parse_args()
    if args.render:
        run = json.loads(Path(args.render).read_text())
        print(render(run["results"], run["args"], run["machine"], run["notes"], run["command"]))
        return
    if args.quick:
        args.rounds, args.duration, args.idle = 1, 3, min(args.idle, 300)
    upstream_h2 = args.upstream == "h2"
    if upstream_h2:
        args.idle = 0
    proxy_cpus, load_cpus = cpu_list(args.proxy_cores), cpu_list(args.load_cores)
    if set(proxy_cpus) & set(load_cpus):
        sys.exit("--proxy-cores and --load-cores overlap")
    names = [p for p in args.proxies.split(",") if p]
    for tool in ["h2load", "taskset"] + [p for p in names if p != "ringlb"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup-bench.sh")
    ringlb_bin = Path(args.bin).resolve()
    if not os.access(ringlb_bin, os.X_OK):
        sys.exit(f"{ringlb_bin} is not an executable: build it (cargo build --release) or pass --bin")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    os.sched_setaffinity(0, load_cpus)

    work = Path(tempfile.mkdtemp(prefix="ringlb-h2-"))
    for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / d).mkdir()
    results = {p: {} for p in names}
    notes, origins = [], []
    info = tls.machine(ringlb_bin)
    info["h2load"] = tls.first_line(["h2load", "--version"])
    try:
        global SCHEME
        cert = None
        if args.tls:
            SCHEME = "https"
            cert = tls.certificates(work)["ec"]
        commands = configs(work, ringlb_bin, len(proxy_cpus), args.io, cert, upstream_h2)
        for name in names:
            out = subprocess.run(commands["checks"][name], capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                sys.exit(f"{name}'s configuration does not check:\n{out.stdout}{out.stderr}")
        origins = [
            subprocess.Popen(["taskset", "-c", args.load_cores, str(ringlb_bin), "origin", "--listen",
                              f"127.0.0.1:{p}", "--name", f"o{i}"] + (["--h2c"] if upstream_h2 else []),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, p in enumerate(ORIGIN_PORTS)
        ]
        for p in ORIGIN_PORTS:
            wait_port(p)
        for rnd in range(1, args.rounds + 1):
            for proxy in names:
                log = work / f"{proxy}-{rnd}.log"
                with tls.running(args.proxy_cores, commands[proxy], log) as proc:
                    if args.idle:
                        soon, later, opened, error = idle_rss_bytes(proc, args.idle)
                        tls.record(results, proxy, IDLE, dict(soon=soon, later=later, opened=opened,
                                                              errors=int(error is not None)))
                        if error:
                            notes.append(f"round {rnd} {proxy} {IDLE}: opened {opened} of {args.idle}: {error}")
                        print(f"round {rnd} {proxy:8} {IDLE:10} {soon:8.0f} / {later:8.0f} bytes per connection"
                              f" ({opened})", file=sys.stderr)
                    for scenario, path in PATHS.items():
                        row, text = saturate(proc, path, args)
                        tls.record(results, proxy, scenario, row)
                        if row["errors"]:
                            notes.append(f"round {rnd} {proxy} {scenario}: {text}")
                        print(f"round {rnd} {proxy:8} {scenario:10} {row['rate']:10.0f} req/s "
                              f"{row['cpu_us']:8.2f} µs/req busy {row['busy']:3.0f}%  {text}", file=sys.stderr)
                    if proc.poll() is not None:
                        notes.append(f"round {rnd} {proxy}: exited with {proc.returncode} during the round")
        notes += tls.printed_notes(work)
    finally:
        tls.stop_all(origins)
        shutil.rmtree(work, ignore_errors=True)

    command = "python3 " + shlex.join(sys.argv)
    text = render(results, vars(args), info, notes, command)
    if not args.quick:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = ROOT / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        kind = "h2" + ("-tls" if args.tls else "") + ("-up" if upstream_h2 else "")
        (out_dir / f"{kind}-{stamp}.json").write_text(json.dumps(
            {"args": vars(args), "command": command, "machine": info, "results": results, "notes": notes},
            indent=2))
        (out_dir / f"{kind}-{stamp}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
