#!/usr/bin/env python3
"""Tunnels side by side: ringlb vs HAProxy vs nginx relaying TCP and WebSocket.

The topology, pinning and accounting of bench/compare.py: each proxy gets the same
cores (--proxy-cores, CPU 1 by default) and one worker/thread/shard per core,
round-robin over the same two `ringlb origin` servers; the load generators (wrk,
curl, ws_load) and the origins run on the other cores (--load-cores, CPU 0 by
default). Rounds are interleaved (ringlb, haproxy, nginx, ringlb, ...) and medians
are reported. Proxy CPU is utime+stime of the proxy's processes (from /proc) over
the measured run; "of which kernel" is the stime part.

Each proxy runs two listeners at once:
  - TCP on 127.0.0.1:19380: ringlb `protocol = "tcp"`, HAProxy `mode tcp`, nginx
    `stream {}` (its dynamic module is loaded when nginx was built with it; if it
    cannot load, nginx is skipped for TCP and the table says why). Each client
    connection is relayed to one origin connection; the origins speak HTTP/1.1, so
    wrk and curl can drive the tunnel:
      (a) new connection per request: wrk -H "Connection: close" /  (the origin
          closes after answering, so a request is a whole tunnel: accept, connect,
          relay, half-close both ways) -> requests/s, CPU us per connection;
      (b) keep-alive, 64 KiB: wrk /bytes/65536 -> requests/s, CPU us per request,
          CPU us per MiB of response body;
      (c) bulk: one curl of /bytes/1073741824 on one connection (bounded by
          --bulk-timeout; the size downloaded is checked) -> seconds, MiB/s, CPU us
          per MiB.
  - HTTP on 127.0.0.1:19381 for WebSocket: ringlb's HTTP listener with a catch-all
    route, HAProxy `mode http` (with `timeout tunnel`), nginx http with
    `proxy_http_version 1.1` and the Upgrade/Connection headers set:
      (d) WebSocket echo: ws_load (bench/ws_load.rs) opens --ws-conns connections to
          /ws (the origin's echo), each sending a --ws-bytes binary message and
          waiting for its echo, again and again -> messages/s and CPU us per message
          (one frame each way). The CPU window starts once every handshake is done.

Every wrk run and ws_load run gets a 1 s warm-up first, unmeasured. --relay adds
bench/relay.rs (the byte-relay floor of compare.py, one thread, no limits) as a
fourth proxy for the TCP and WebSocket scenarios.

Run `scripts/setup-bench.sh` first (wrk, haproxy, nginx; nginx's stream module is
Debian's libnginx-mod-stream). Loopback only; every step is bounded. Writes
bench/results/tunnels-<time>.{json,md} and prints the markdown table.
"""

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing compare.py
# The /proc accounting and port helpers are compare.py's, so both count alike.
import compare  # noqa: E402
from compare import cpu_list, cpu_ticks, med, memory_kib, tree, wait_port, wait_port_closed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ORIGIN_PORTS = [19301, 19302]
TCP_PORT = 19380
WS_PORT = 19381
ADMIN_PORT = 19390
PROXIES = ["ringlb", "haproxy", "nginx"]
MIB = 1024 * 1024
# Scenario keys, in table order.
TCP_CLOSE = "tcp: new connection per request"
TCP_64K = "tcp: keep-alive, 64 KiB"
TCP_BULK = "tcp: bulk, one connection"
WS_ECHO = "websocket: echo"
SCENARIOS = [TCP_CLOSE, TCP_64K, TCP_BULK, WS_ECHO]

LOAD_CORES = "0"  # set from --load-cores


def stream_module():
    """(load_module line or "", None) when nginx can run a stream {} block, else
    (None, why not). Debian builds it as a dynamic module (--with-stream=dynamic)
    that libnginx-mod-stream installs under the modules path."""
    if not shutil.which("nginx"):
        return None, "nginx is missing"
    build = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=10).stderr
    flags = build.split()
    if "--with-stream" in flags:
        return "", None
    if "--with-stream=dynamic" not in flags:
        return None, "nginx was built without the stream module"
    dirs = [m.split("=", 1)[1] for m in flags if m.startswith("--modules-path=")]
    dirs += ["/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/etc/nginx/modules",
             "/usr/lib64/nginx/modules"]
    for d in dirs:
        path = Path(d) / "ngx_stream_module.so"
        if path.exists():
            return f"load_module {path};\n", None
    return None, ("nginx's stream module is dynamic and ngx_stream_module.so is not installed "
                  "(Debian: apt-get install libnginx-mod-stream)")


def configs(work, ringlb_bin, workers, stream):
    """The proxies' commands, each with a TCP listener on TCP_PORT and an HTTP one
    on WS_PORT, over the same origins. `stream` is the nginx load_module line, or
    None to leave nginx without its TCP listener."""
    tcp_backends = ", ".join(f'{{ name = "t{i}", address = "127.0.0.1:{p}" }}'
                             for i, p in enumerate(ORIGIN_PORTS))
    ws_backends = ", ".join(f'{{ name = "w{i}", address = "127.0.0.1:{p}" }}'
                            for i, p in enumerate(ORIGIN_PORTS))
    (work / "ringlb.toml").write_text(
        f"[server]\nshards = {workers}\n\n"
        f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"\n\n'
        '[logging]\nlevel = "warn"\n\n'
        '[timeouts]\ntunnel_idle = "1h"\n\n'
        f'[[listeners]]\nname = "t"\naddress = "127.0.0.1:{TCP_PORT}"\nprotocol = "tcp"\n'
        'cluster = "tcp"\n\n'
        f'[[listeners]]\nname = "w"\naddress = "127.0.0.1:{WS_PORT}"\nprotocol = "http"\n\n'
        '[[routes]]\nlistener = "w"\ncluster = "ws"\n\n'
        '[[clusters]]\nname = "tcp"\nhealth_check = { kind = "none" }\n'
        f"backends = [ {tcp_backends} ]\n\n"
        '[[clusters]]\nname = "ws"\nhealth_check = { kind = "none" }\n'
        f"backends = [ {ws_backends} ]\n"
    )
    servers = "".join(f"    server o{i} 127.0.0.1:{p}\n" for i, p in enumerate(ORIGIN_PORTS))
    (work / "haproxy.cfg").write_text(
        f"global\n    nbthread {workers}\n    maxconn 9000\n\n"
        "defaults\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n"
        "    timeout tunnel 1h\n\n"
        f"frontend tcp_fe\n    mode tcp\n    bind 127.0.0.1:{TCP_PORT}\n    default_backend tcp_be\n\n"
        f"backend tcp_be\n    mode tcp\n    balance roundrobin\n{servers}\n"
        f"frontend ws_fe\n    mode http\n    bind 127.0.0.1:{WS_PORT}\n    default_backend ws_be\n\n"
        f"backend ws_be\n    mode http\n    balance roundrobin\n{servers}"
    )
    upstreams = "".join(f"        server 127.0.0.1:{p};\n" for p in ORIGIN_PORTS)
    stream_block = "" if stream is None else (
        "stream {\n"
        f"    upstream tcp_origins {{\n{upstreams}    }}\n"
        f"    server {{\n        listen 127.0.0.1:{TCP_PORT};\n        proxy_pass tcp_origins;\n"
        "        proxy_connect_timeout 2s;\n        proxy_timeout 1h;\n    }\n}\n"
    )
    (work / "nginx.conf").write_text(
        (stream or "")
        + f"worker_processes {workers};\ndaemon off;\nerror_log {work}/nginx-error.log warn;\n"
        f"pid {work}/nginx.pid;\nworker_rlimit_nofile 19000;\n"
        "events { worker_connections 18000; }\n"
        + stream_block
        + "http {\n    access_log off;\n"
        f"    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;\n"
        f"    fastcgi_temp_path {work}/fastcgi;\n    uwsgi_temp_path {work}/uwsgi;\n"
        f"    scgi_temp_path {work}/scgi;\n"
        f"    upstream ws_origins {{\n{upstreams}    }}\n"
        f"    server {{\n        listen 127.0.0.1:{WS_PORT};\n"
        "        location / {\n            proxy_pass http://ws_origins;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Upgrade $http_upgrade;\n"
        '            proxy_set_header Connection "upgrade";\n'
        "            proxy_read_timeout 1h;\n            proxy_send_timeout 1h;\n"
        "            proxy_buffering off;\n        }\n    }\n}\n"
    )
    return {
        "ringlb": [str(ringlb_bin), "run", "--config", str(work / "ringlb.toml")],
        "haproxy": ["haproxy", "-f", str(work / "haproxy.cfg"), "-db"],
        "nginx": ["nginx", "-p", str(work), "-c", str(work / "nginx.conf")],
    }


def check_configs(work, ringlb_bin, commands):
    """Every proxy's own configuration check, before any round: a typo fails here,
    not as a port that never opens."""
    checks = {
        "ringlb": [str(ringlb_bin), "check", "--config", str(work / "ringlb.toml")],
        "haproxy": ["haproxy", "-c", "-f", str(work / "haproxy.cfg")],
        "nginx": ["nginx", "-t", "-p", str(work), "-c", str(work / "nginx.conf")],
    }
    for name in commands:
        if name not in checks:
            continue
        out = subprocess.run(checks[name], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            sys.exit(f"{name}'s configuration does not check:\n{out.stdout}{out.stderr}")


def wrk(port, path, headers, seconds, conns):
    """compare.py's wrk run on the load cores against `port`: (requests/s,
    requests, non-2xx, socket errors as a sum, their text)."""
    compare.LOAD_CORES = LOAD_CORES
    rps, requests, non2xx, sock_text = compare.wrk(path, headers, seconds, conns, port=port)
    sock_sum = sum(int(n) for n in re.findall(r"\d+", sock_text))
    return rps, requests, non2xx, sock_sum, sock_text


def cpu_since(pids, t0):
    """Microseconds of (user + system, system) CPU since `t0`."""
    user, system = cpu_ticks(pids)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return (user - t0[0] + system - t0[1]) * tick_us, (system - t0[1]) * tick_us


def run_wrk(proc, path, headers, args):
    """A 1 s warm-up, then the measured run: (requests/s, requests, errors, their
    text, CPU us, of which kernel). The process tree is read after the warm-up, so
    workers forked after the port opened (nginx's) are counted."""
    wrk(TCP_PORT, path, headers, 1, args.conns)
    pids = tree(proc.pid)
    t0 = cpu_ticks(pids)
    rps, requests, non2xx, sock_sum, sock_text = wrk(TCP_PORT, path, headers, args.duration, args.conns)
    cpu_us, sys_us = cpu_since(pids, t0)
    return rps, requests, non2xx + sock_sum, f"non-2xx {non2xx}, socket errors: {sock_text or 'none'}", cpu_us, sys_us


def bulk(proc, args):
    """One curl of --bulk-bytes on one connection: (seconds, bytes, ok, note, CPU us,
    of which kernel)."""
    pids = tree(proc.pid)
    t0 = cpu_ticks(pids)
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORES, "curl", "-s", "-o", "/dev/null", "--max-time", str(args.bulk_timeout),
         "-w", "%{http_code} %{size_download} %{time_total}",
         f"http://127.0.0.1:{TCP_PORT}/bytes/{args.bulk_bytes}"],
        capture_output=True, text=True, timeout=args.bulk_timeout + 30,
    )
    cpu_us, sys_us = cpu_since(pids, t0)
    try:
        code, size, seconds = out.stdout.split()
        size, seconds = int(size), float(seconds)
    except ValueError:
        code, size, seconds = "?", 0, float("nan")
    ok = out.returncode == 0 and code == "200" and size == args.bulk_bytes
    note = f"curl exit {out.returncode}, status {code}, {size} bytes"
    return seconds, size, ok, note, cpu_us, sys_us


def ws_run(proc, ws_bin, port, seconds, args):
    """One ws_load run against `port`: (messages/s, messages, errors, note, CPU us,
    of which kernel). ws_load prints 'ready' once every handshake is done; the CPU
    window starts there and ends when it exits."""
    pids = tree(proc.pid)
    load = subprocess.Popen(
        ["taskset", "-c", LOAD_CORES, str(ws_bin), f"127.0.0.1:{port}", str(args.ws_conns),
         str(seconds), str(args.ws_bytes)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = load.stdout.readline().strip()
        t0 = cpu_ticks(pids)
        out, err = load.communicate(timeout=seconds + 30)
        cpu_us, sys_us = cpu_since(pids, t0)
    except subprocess.TimeoutExpired:
        load.kill()
        load.communicate()
        return 0.0, 0, 1, "ws_load timed out", 0.0, 0.0
    found = re.search(r"messages=(\d+) messages_per_sec=([\d.]+) errors=(\d+)", out)
    if ready != "ready" or not found:
        note = (err.strip().splitlines() or ["no output"])[-1]
        return 0.0, 0, 1, f"ws_load failed (exit {load.returncode}): {note}", cpu_us, sys_us
    messages, rate, errors = int(found.group(1)), float(found.group(2)), int(found.group(3))
    note = f"errors {errors}" + (f": {err.strip().splitlines()[-1]}" if errors and err.strip() else "")
    return rate, messages, errors, note, cpu_us, sys_us


@contextlib.contextmanager
def running(cores, command, ws_listener=True):
    """A proxy started on `cores` once its ports are free, stopped on leaving."""
    ports = (TCP_PORT, WS_PORT) if ws_listener else (TCP_PORT,)
    for port in ports:
        wait_port_closed(port)
    proc = subprocess.Popen(["taskset", "-c", cores, *command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports:
            wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def record(results, proxy, scenario, **values):
    row = results[proxy].setdefault(scenario, {})
    for key, value in values.items():
        row.setdefault(key, []).append(value)


def ratio(a, b):
    return f"{a / b:.2f}x" if b and b == b and a == a else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured wrk and ws_load run")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections")
    ap.add_argument("--bulk-bytes", type=int, default=1024 * MIB, help="bytes of the bulk transfer")
    ap.add_argument("--bulk-timeout", type=int, default=120, help="seconds the bulk transfer may take")
    ap.add_argument("--ws-conns", type=int, default=32, help="WebSocket connections")
    ap.add_argument("--ws-bytes", type=int, default=32, help="bytes per WebSocket message")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--relay", action="store_true",
                    help="also bench/relay.rs, the byte-relay floor of compare.py (one thread)")
    ap.add_argument("--proxy-cores", default="1",
                    help="CPUs every proxy is pinned to (taskset list); one worker per CPU")
    ap.add_argument("--load-cores", default="0",
                    help="CPUs for wrk, curl, ws_load and the origins (taskset list)")
    args = ap.parse_args()
    global LOAD_CORES
    LOAD_CORES = args.load_cores
    proxy_cpus = cpu_list(args.proxy_cores)
    if set(proxy_cpus) & set(cpu_list(args.load_cores)):
        sys.exit("--proxy-cores and --load-cores overlap: the proxy would compete with its load")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    names = [p for p in args.proxies.split(",") if p]
    for tool in ["wrk", "curl", "taskset"] + [p for p in names if p != "ringlb"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup-bench.sh")
    examples = ["--example", "ws_load"] + (["--example", "relay"] if args.relay else [])
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins", *examples], cwd=ROOT, check=True)
    ringlb_bin = ROOT / "target" / "release" / "ringlb"
    ws_bin = ROOT / "target" / "release" / "examples" / "ws_load"
    stream, no_stream = stream_module() if "nginx" in names else ("", None)
    work = Path(tempfile.mkdtemp(prefix="ringlb-tunnels-"))
    for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / d).mkdir()
    all_commands = configs(work, ringlb_bin, len(proxy_cpus), stream)
    commands = {p: all_commands[p] for p in names}
    check_configs(work, ringlb_bin, commands)
    if args.relay:
        if len(proxy_cpus) != 1:
            sys.exit("--relay is one thread: it only compares with one proxy core")
        # The relay listens on one port; the WebSocket scenario reaches it there too.
        relay = ROOT / "target" / "release" / "examples" / "relay"
        commands["relay"] = [str(relay), f"127.0.0.1:{TCP_PORT}",
                             *[f"127.0.0.1:{p}" for p in ORIGIN_PORTS]]
    skipped = {}  # (proxy, scenario) -> why
    if "nginx" in commands and stream is None:
        for s in (TCP_CLOSE, TCP_64K, TCP_BULK):
            skipped[("nginx", s)] = f"skipped: {no_stream}"
    origins = [
        subprocess.Popen(["taskset", "-c", args.load_cores, str(ringlb_bin), "origin", "--listen",
                          f"127.0.0.1:{p}", "--name", f"o{i}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, p in enumerate(ORIGIN_PORTS)
    ]
    results = {p: {} for p in commands}
    notes = []
    try:
        for p in ORIGIN_PORTS:
            wait_port(p)
        for rnd in range(1, args.rounds + 1):
            for proxy, command in commands.items():
                # The relay has one listener: WebSocket goes through the TCP port.
                ws_port = TCP_PORT if proxy == "relay" else WS_PORT
                with running(args.proxy_cores, command, proxy != "relay") as proc:
                    if (proxy, TCP_CLOSE) not in skipped:
                        for scenario, path, headers in (
                            (TCP_CLOSE, "/", ["-H", "Connection: close"]),
                            (TCP_64K, "/bytes/65536", []),
                        ):
                            rps, requests, errors, text, cpu_us, sys_us = run_wrk(proc, path, headers, args)
                            per = max(requests, 1)
                            record(results, proxy, scenario, rate=rps, cpu_us=cpu_us / per,
                                   sys_us=sys_us / per, errors=errors,
                                   cpu_us_mib=cpu_us / max(requests * (65536 / MIB), 1e-9))
                            if errors:
                                notes.append(f"round {rnd} {proxy} {scenario}: {text}")
                            print(f"round {rnd} {proxy:8} {scenario:34} {rps:10.0f} req/s "
                                  f"{cpu_us / per:8.2f} µs/req  {text}", file=sys.stderr)
                        seconds, size, ok, text, cpu_us, sys_us = bulk(proc, args)
                        mib = size / MIB
                        record(results, proxy, TCP_BULK, seconds=seconds,
                               rate=mib / seconds if ok else 0.0,
                               cpu_us=cpu_us / mib if ok else float("nan"),
                               sys_us=sys_us / mib if ok else float("nan"),
                               errors=0 if ok else 1)
                        if not ok:
                            notes.append(f"round {rnd} {proxy} {TCP_BULK}: {text}")
                        print(f"round {rnd} {proxy:8} {TCP_BULK:34} {seconds:8.2f} s "
                              f"{mib / seconds:8.0f} MiB/s {cpu_us / max(mib, 1e-9):8.1f} µs/MiB  {text}",
                              file=sys.stderr)
                    ws_run(proc, ws_bin, ws_port, 1, args)  # warm-up
                    rate, messages, errors, text, cpu_us, sys_us = ws_run(
                        proc, ws_bin, ws_port, args.duration, args)
                    per = max(messages, 1)
                    record(results, proxy, WS_ECHO, rate=rate, cpu_us=cpu_us / per,
                           sys_us=sys_us / per, errors=errors)
                    if errors:
                        notes.append(f"round {rnd} {proxy} {WS_ECHO}: {text}")
                    print(f"round {rnd} {proxy:8} {WS_ECHO:34} {rate:10.0f} msg/s "
                          f"{cpu_us / per:8.2f} µs/msg  {text}", file=sys.stderr)
                    record(results, proxy, "rss", peak_kib=memory_kib(tree(proc.pid), "VmHWM"))
                    if proc.poll() is not None:
                        notes.append(f"round {rnd} {proxy}: exited with {proc.returncode} during the round")
    finally:
        for o in origins:
            o.terminate()
        for o in origins:
            try:
                o.wait(timeout=10)
            except subprocess.TimeoutExpired:
                o.kill()
        shutil.rmtree(work, ignore_errors=True)

    threads = len(cpu_list(LOAD_CORES))
    lines = [
        f"Medians of {args.rounds} interleaved rounds; proxies on CPU {args.proxy_cores} "
        f"({len(proxy_cpus)} worker(s) each), load generators and origins on CPU {args.load_cores}; "
        "round-robin over two `ringlb origin`s.",
    ]

    def table(scenario, title, header, cells):
        lines.extend(["", title, "", header, "|" + " --- |" * (header.count("|") - 1)])
        for proxy in results:
            if (proxy, scenario) in skipped:
                lines.append(f"| {proxy} | {skipped[(proxy, scenario)]} |")
                continue
            r = results[proxy].get(scenario)
            if r:
                lines.append(f"| {proxy} | " + " | ".join(cells(r)) + f" | {int(sum(r['errors']))} |")

    def ratios(scenario, cpu_key, cpu_name, rate_name):
        ours = results.get("ringlb", {}).get(scenario)
        for other, label in (("haproxy", "HAProxy"), ("nginx", "nginx")):
            theirs = results.get(other, {}).get(scenario)
            if ours and theirs and (other, scenario) not in skipped:
                lines.append(f"\nringlb / {label}: CPU ({cpu_name}) "
                             f"{ratio(med(ours[cpu_key]), med(theirs[cpu_key]))}, "
                             f"throughput ({rate_name}) {ratio(med(ours['rate']), med(theirs['rate']))}")

    table(TCP_CLOSE,
          f"**(a) TCP, new connection per request** (wrk -t{threads} -c{args.conns} -d{args.duration}s "
          '-H "Connection: close" /, through the TCP listener)',
          "| proxy | requests/s | proxy CPU µs/connection | of which kernel | errors |",
          lambda r: [f"{med(r['rate']):.0f}", f"{med(r['cpu_us']):.2f}", f"{med(r['sys_us']):.2f}"])
    ratios(TCP_CLOSE, "cpu_us", "per connection", "requests/s")
    table(TCP_64K,
          f"**(b) TCP, keep-alive, 64 KiB** (wrk -t{threads} -c{args.conns} -d{args.duration}s /bytes/65536; "
          "MiB counts response bodies)",
          "| proxy | requests/s | proxy CPU µs/request | of which kernel | proxy CPU µs/MiB | errors |",
          lambda r: [f"{med(r['rate']):.0f}", f"{med(r['cpu_us']):.2f}", f"{med(r['sys_us']):.2f}",
                     f"{med(r['cpu_us_mib']):.1f}"])
    ratios(TCP_64K, "cpu_us", "per request", "requests/s")
    table(TCP_BULK,
          f"**(c) TCP, bulk: {args.bulk_bytes / MIB:.0f} MiB on one connection** (curl /bytes/{args.bulk_bytes}, "
          "size checked)",
          "| proxy | seconds | MiB/s | proxy CPU µs/MiB | of which kernel | errors |",
          lambda r: [f"{med(r['seconds']):.2f}", f"{med(r['rate']):.0f}", f"{med(r['cpu_us']):.1f}",
                     f"{med(r['sys_us']):.1f}"])
    ratios(TCP_BULK, "cpu_us", "per MiB", "MiB/s")
    table(WS_ECHO,
          f"**(d) WebSocket echo** (ws_load: {args.ws_conns} connections, {args.ws_bytes}-byte binary "
          f"messages, each waiting for its echo, {args.duration}s; a message is one frame each way)",
          "| proxy | messages/s | proxy CPU µs/message | of which kernel | errors |",
          lambda r: [f"{med(r['rate']):.0f}", f"{med(r['cpu_us']):.2f}", f"{med(r['sys_us']):.2f}"])
    ratios(WS_ECHO, "cpu_us", "per message", "messages/s")
    lines += ["", "| proxy | peak RSS KiB |", "| --- | --- |"]
    for proxy in results:
        lines.append(f"| {proxy} | {med(results[proxy].get('rss', {}).get('peak_kib', [])):.0f} |")
    if notes:
        lines += ["", "Errors seen:", ""] + [f"- {n}" for n in notes]
    table_text = "\n".join(lines)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"tunnels-{stamp}.json").write_text(json.dumps(
        {"args": vars(args), "results": results, "notes": notes,
         "skipped": {f"{p} / {s}": why for (p, s), why in skipped.items()}}, indent=2))
    (out_dir / f"tunnels-{stamp}.md").write_text(table_text + "\n")
    print(table_text)


if __name__ == "__main__":
    main()
