#!/usr/bin/env python3
"""Side-by-side benchmark: ringlb vs HAProxy vs nginx in one topology.

Each proxy gets the same cores (--proxy-cores, CPU 1 by default, as on a 2-core
machine) and one worker/thread/shard per core, round-robin over the same two
`ringlb origin` servers, upstream keep-alive on. wrk, oha and the origins run on the
other cores (--load-cores, CPU 0 by default). Rounds are interleaved (ringlb,
haproxy, nginx, ringlb, ...) and medians are reported, so a noisy machine shifts all
alike.

Figures per proxy and scenario:
  - requests/s at saturation (wrk -t1 -c64);
  - proxy CPU time per request: utime+stime of the proxy's processes (from /proc)
    over the wrk run, divided by the requests wrk completed, and the stime part
    alone (the kernel's share: loopback TCP and the proxy's syscalls);
  - peak RSS of the proxy's processes;
  - p50/p99/p99.9 latency at a fixed offered rate (oha -q with latency correction),
    keep-alive scenario only, in rounds of their own (--latency-rounds, 15 by
    default, interleaved);
  - RSS per idle keep-alive client connection: 8,000 of them by default (the
    machines' hard file limit of 20,000 allows no more for HAProxy), opened one
    after another on the fresh proxy, one request each, then held; read 0.5 s and
    3 s after the last one opened (the second is the steady state: ringlb hands
    memory freed over a second ago back once a second).

Scenarios: small responses with keep-alive (the headline), a new connection per
request (Connection: close), and 64 KiB responses; --scenarios picks some
(small, close, 64k).

Scaling (--scaling, for a machine with more cores than this one): keep-alive small
at saturation with 1, 2, 4, ... workers (up to the number of proxy cores, which is
always included) for every proxy, ringlb shards against HAProxy threads and nginx
workers, each pinned to the first N proxy cores, interleaved round by round, with
`--conns` connections per worker. The load generator needs cores of its own that
can saturate the largest setting: on a 32-core machine, say,
`--proxy-cores 16-31 --load-cores 0-15 --scaling`. The table gives requests/s, CPU
per request, ringlb's ratio to each, and each proxy's requests/s over N times its
one-worker figure (how well it scales). `--allow-overlap` lets the proxy and load
cores overlap, only to check the harness on a small machine (the figures then
mean nothing).

Floors (one proxy core only; --no-floor skips them): the keep-alive small scenario
through HAProxy in `mode tcp` and through `relay` (bench/relay.rs, a byte relay on
the shard's runtime and ring setup), interleaved with the proxies. Neither does any
HTTP work, so their CPU per request is what the four socket operations of a proxied
request cost here: the floor under any HTTP proxy's figure.

Verdicts (bench/verdict.py): ringlb against HAProxy and nginx, p99 by the
difference of medians and CPU per request by their ratio, each with a 90% bootstrap
interval over the paired rounds: "lower" or "higher" only when the interval
excludes no difference, else "level".

Run `scripts/setup-bench.sh` first (wrk, haproxy, nginx, oha). Loopback only;
every step is bounded. Writes bench/results/compare-<time>.{json,md} and prints the
markdown table.
"""

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT / "bench"))
import verdict  # noqa: E402  (bench/verdict.py, beside this file)
ORIGIN_PORTS = [19301, 19302]
PROXY_PORT = 19380
ADMIN_PORT = 19390
PROXIES = ["ringlb", "haproxy", "nginx"]
SCENARIOS = {
    "keep-alive, small": ("/", []),
    "new connection per request": ("/", ["-H", "Connection: close"]),
    "keep-alive, 64 KiB": ("/bytes/65536", []),
}
# --scenarios names them so.
SHORT = {"small": "keep-alive, small", "close": "new connection per request",
         "64k": "keep-alive, 64 KiB"}


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
    """(user, system) clock ticks of the processes, threads included."""
    user = system = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user, system


def cpu_us_per_request(pids, t0, requests):
    """Microseconds of (user + system, system) CPU per request since `t0`."""
    user, system = cpu_ticks(pids)
    per = 1e6 / os.sysconf("SC_CLK_TCK") / max(requests, 1)
    return (user - t0[0] + system - t0[1]) * per, (system - t0[1]) * per


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


def cpu_list(text):
    """CPUs named by a taskset-style list such as "1", "2-3" or "0,2-3"."""
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def configs(work, ringlb_bin, workers):
    backends = "".join(
        f'[[backends]]\nname = "o{i}"\naddress = "127.0.0.1:{p}"\n'
        for i, p in enumerate(ORIGIN_PORTS)
    )
    (work / "ringlb.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{PROXY_PORT}"\nshards = {workers}\n'
        f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"\n[logging]\nlevel = "warn"\n'
        f'[health_check]\nkind = "none"\n{backends}'
    )
    servers = "".join(
        f"    server o{i} 127.0.0.1:{p}\n" for i, p in enumerate(ORIGIN_PORTS)
    )
    def haproxy_cfg(mode, timeouts, reuse):
        return (
            f"global\n    nbthread {workers}\n    maxconn 9000\n\n"
            f"defaults\n    mode {mode}\n    timeout connect 2s\n    timeout client 60s\n"
            f"{timeouts}\n"
            f"frontend fe\n    bind 127.0.0.1:{PROXY_PORT}\n    default_backend be\n\n"
            f"backend be\n    balance roundrobin\n{reuse}{servers}"
        )

    (work / "haproxy.cfg").write_text(haproxy_cfg(
        "http", "    timeout server 30s\n    timeout http-keep-alive 60s\n",
        "    http-reuse always\n"))
    # The floor: HAProxy relaying bytes (mode tcp), no HTTP work.
    (work / "haproxy-tcp.cfg").write_text(haproxy_cfg("tcp", "    timeout server 60s\n", ""))
    upstreams = "".join(f"        server 127.0.0.1:{p};\n" for p in ORIGIN_PORTS)
    (work / "nginx.conf").write_text(
        f"worker_processes {workers};\ndaemon off;\nerror_log {work}/nginx-error.log warn;\n"
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


def floor_commands(work, relay_bin):
    """The floors: the same socket work with no HTTP at all, one worker each."""
    origins = [f"127.0.0.1:{p}" for p in ORIGIN_PORTS]
    return {
        "haproxy, mode tcp": ["haproxy", "-f", str(work / "haproxy-tcp.cfg"), "-db"],
        "relay (monoio, no HTTP)": [str(relay_bin), f"127.0.0.1:{PROXY_PORT}", *origins],
    }


LOAD_CORES = "0"  # set from --load-cores


def wrk(path, headers, seconds, conns, port=PROXY_PORT):
    """(requests/s, requests, non-2xx, socket errors as wrk prints them)."""
    threads = len(cpu_list(LOAD_CORES))
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORES, "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", *headers,
         f"http://127.0.0.1:{port}{path}"],
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
        ["taskset", "-c", LOAD_CORES, "oha", "-z", f"{seconds}s", "-q", str(rate), "-c", "32",
         "--latency-correction", "--no-tui", "--output-format", "json",
         f"http://127.0.0.1:{PROXY_PORT}/"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout
    data = json.loads(out)
    p = data["latencyPercentiles"]
    return {k: p[k] * 1000.0 for k in ("p50", "p99", "p99.9")}


def idle_rss_bytes(pid, count):
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
    # The process tree once it has served (nginx forks its workers after it listens).
    pids = tree(pid)
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
        soon = memory_kib(pids, "VmRSS")
        time.sleep(2.5)  # steady state: ringlb returns memory freed over 1 s ago, once a second
        later = memory_kib(pids, "VmRSS")
    finally:
        for s in conns:
            s.close()
    return (soon - before) * 1024 / count, (later - before) * 1024 / count


def med(xs):
    return statistics.median(xs) if xs else float("nan")


@contextlib.contextmanager
def running(cores, command):
    """A proxy started on `cores` once the port is free, stopped on leaving."""
    wait_port_closed(PROXY_PORT)
    proc = subprocess.Popen(["taskset", "-c", cores, *command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(PROXY_PORT)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def saturate(pid, path, headers, args, conns=None):
    """A 1 s wrk warm-up, then the measured run: (requests/s, non-2xx, socket
    errors, CPU µs per request, of which kernel µs) of the process tree under `pid`,
    read after the warm-up: nginx forks its workers after it listens, and a tree
    read before would hold the master alone (CPU 0.00 per request, as nginx's
    round 4 in compare-20261202-120607 shows)."""
    conns = conns or args.conns
    wrk(path, headers, 1, conns)
    pids = tree(pid)
    t0 = cpu_ticks(pids)
    rps, requests, non2xx, socket_errors = wrk(path, headers, args.duration, conns)
    cpu_us, sys_us = cpu_us_per_request(pids, t0, requests)
    return rps, non2xx, socket_errors, cpu_us, sys_us


def worker_counts(cores):
    """1, 2, 4, ... up to `cores`, and `cores` itself."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [cores]


def run_scaling(args, proxy_cpus, ringlb_bin, work, names):
    """Keep-alive small at saturation with 1, 2, 4, ... workers per proxy (ringlb
    shards, HAProxy threads, nginx workers), each on the first N proxy cores, rounds
    interleaved: {proxy: {workers: {"rps": [...], "cpu_us": [...]}}}."""
    counts = worker_counts(len(proxy_cpus))
    commands = {}
    for n in counts:
        tree_dir = work / f"scaling-{n}"
        tree_dir.mkdir()
        for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
            (tree_dir / d).mkdir()
        commands[n] = configs(tree_dir, ringlb_bin, n)
    results = {p: {n: {} for n in counts} for p in names}
    for rnd in range(1, args.rounds + 1):
        for n in counts:
            cores = ",".join(str(c) for c in proxy_cpus[:n])
            for proxy in names:
                with running(cores, commands[n][proxy]) as proc:
                    rps, _, _, cpu_us, _ = saturate(proc.pid, "/", [], args, conns=args.conns * n)
                row = results[proxy][n]
                row.setdefault("rps", []).append(rps)
                row.setdefault("cpu_us", []).append(cpu_us)
                print(f"scaling round {rnd} {proxy:8} {n:3} worker(s) {rps:10.0f} req/s "
                      f"{cpu_us:7.2f} µs/req", file=sys.stderr)
    return results


def scaling_table(scaling, names, args):
    """The scaling table, as markdown lines."""
    counts = sorted(next(iter(scaling.values())))
    others = [p for p in names if p != "ringlb"]
    lines = [f"Scaling, keep-alive small: medians of {args.rounds} interleaved rounds, "
             f"wrk with {args.conns} connections per worker; workers on the first N of "
             f"CPUs {args.proxy_cores}, load on {args.load_cores}.", "",
             "| workers | " + " | ".join(f"{p} req/s | {p} CPU µs/req" for p in names)
             + "".join(f" | ringlb / {p} req/s" for p in others if "ringlb" in names) + " |",
             "| --- |" + " --- | --- |" * len(names)
             + " --- |" * (len(others) if "ringlb" in names else 0)]
    for n in counts:
        cells = [f"{med(scaling[p][n]['rps']):.0f} | {med(scaling[p][n]['cpu_us']):.2f}" for p in names]
        if "ringlb" in names:
            cells += [f"{med(scaling['ringlb'][n]['rps']) / med(scaling[p][n]['rps']):.2f}x" for p in others]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Requests/s with N workers over N times the one-worker figure (1.00 scales "
                  "perfectly):", "",
              "| workers | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for n in counts:
        lines.append(f"| {n} | " + " | ".join(
            f"{med(scaling[p][n]['rps']) / (n * med(scaling[p][1]['rps'])):.2f}" for p in names) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds of the saturation runs (5 at least for a CPU verdict)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rate", type=int, default=10000, help="oha's fixed offered rate")
    ap.add_argument("--latency-rounds", type=int, default=15,
                    help="interleaved rounds of the fixed-rate latency run (the p99 verdict needs many)")
    ap.add_argument("--latency-duration", type=int, default=5, help="seconds per latency run")
    # 8,000: these machines' hard RLIMIT_NOFILE is 20,000, and HAProxy needs two
    # descriptors per connection it may hold (maxconn 9,000).
    ap.add_argument("--idle", type=int, default=8000, help="idle connections for the RSS figure")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--proxy-cores", default="1",
                    help="CPUs every proxy is pinned to (taskset list); one worker per CPU")
    ap.add_argument("--load-cores", default="0",
                    help="CPUs for wrk, oha and the origins (taskset list)")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another ringlb binary (an earlier build) to run as proxy "
                         "'ringlb-baseline' in the same rounds, with the same configuration: "
                         "before/after rows for one change")
    ap.add_argument("--scenarios", default="small,close,64k",
                    help="which saturation scenarios to run: small, close, 64k")
    ap.add_argument("--scaling", action="store_true",
                    help="also the scaling table: 1, 2, 4, ... workers per proxy on the proxy cores")
    ap.add_argument("--allow-overlap", action="store_true",
                    help="let proxy and load cores overlap (only to check the harness: "
                         "the figures mean nothing)")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the floors (HAProxy in mode tcp, a monoio byte relay)")
    args = ap.parse_args()
    global LOAD_CORES
    LOAD_CORES = args.load_cores
    proxy_cpus = cpu_list(args.proxy_cores)
    if set(proxy_cpus) & set(cpu_list(args.load_cores)) and not args.allow_overlap:
        sys.exit("--proxy-cores and --load-cores overlap: the proxy would compete with its load")
    global SCENARIOS
    try:
        SCENARIOS = {SHORT[k]: SCENARIOS[SHORT[k]] for k in args.scenarios.split(",")}
    except KeyError as e:
        sys.exit(f"--scenarios: unknown {e} (known: {', '.join(SHORT)})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    for tool in ["wrk", "taskset"] + [p for p in args.proxies.split(",") if not p.startswith("ringlb")]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup-bench.sh")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins", "--example", "relay"],
                   cwd=ROOT, check=True)
    ringlb_bin = ROOT / "target" / "release" / "ringlb"
    work = Path(tempfile.mkdtemp(prefix="ringlb-bench-"))
    # The relay is one thread, so the floors only compare with one proxy core.
    floors = {}
    if (not args.no_floor and len(proxy_cpus) == 1 and shutil.which("haproxy")
            and "keep-alive, small" in SCENARIOS):
        floors = floor_commands(work, ROOT / "target" / "release" / "examples" / "relay")
    for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / d).mkdir()
    commands = configs(work, ringlb_bin, len(proxy_cpus))
    if args.baseline:
        commands["ringlb-baseline"] = [str(Path(args.baseline).resolve()), "run", "--config",
                                       str(work / "ringlb.toml")]
    origins = [
        subprocess.Popen(["taskset", "-c", args.load_cores, str(ringlb_bin), "origin", "--listen",
                          f"127.0.0.1:{p}", "--name", f"o{i}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, p in enumerate(ORIGIN_PORTS)
    ]
    names = args.proxies.split(",")
    if args.baseline:
        names.insert(names.index("ringlb") + 1 if "ringlb" in names else 0, "ringlb-baseline")
    results = {p: {} for p in names}
    floor_results = {f: {} for f in floors}
    try:
        for p in ORIGIN_PORTS:
            wait_port(p)
        for rnd in range(1, args.rounds + 1):
            for proxy in results:
                with running(args.proxy_cores, commands[proxy]) as proc:
                    if args.idle:
                        soon, later = idle_rss_bytes(proc.pid, args.idle)
                        head = results[proxy].setdefault("keep-alive, small", {})
                        head.setdefault("idle_bytes_soon", []).append(soon)
                        head.setdefault("idle_bytes", []).append(later)
                    for name, (path, headers) in SCENARIOS.items():
                        rps, non2xx, socket_errors, cpu_us, sys_us = saturate(proc.pid, path, headers, args)
                        row = results[proxy].setdefault(name, {})
                        row.setdefault("rps", []).append(rps)
                        row.setdefault("cpu_us", []).append(cpu_us)
                        row.setdefault("sys_us", []).append(sys_us)
                        row.setdefault("errors", []).append(non2xx)
                        print(f"round {rnd} {proxy:15} {name:28} {rps:10.0f} req/s {cpu_us:7.2f} µs/req"
                              f" non-2xx {non2xx} {socket_errors}", file=sys.stderr)
                    head = results[proxy].setdefault("keep-alive, small", {})
                    head.setdefault("peak_rss_kib", []).append(memory_kib(tree(proc.pid), "VmHWM"))
            for floor, command in floors.items():
                with running(args.proxy_cores, command) as proc:
                    rps, non2xx, socket_errors, cpu_us, sys_us = saturate(proc.pid, "/", [], args)
                    row = floor_results[floor]
                    for key, value in (("rps", rps), ("cpu_us", cpu_us), ("sys_us", sys_us), ("errors", non2xx)):
                        row.setdefault(key, []).append(value)
                    print(f"round {rnd} floor: {floor:24} {rps:10.0f} req/s {cpu_us:7.2f} µs/req"
                          f" non-2xx {non2xx} {socket_errors}", file=sys.stderr)
        for rnd in range(1, args.latency_rounds + 1 if shutil.which("oha") else 1):
            for proxy in results:
                with running(args.proxy_cores, commands[proxy]):
                    # Warm up (connections, caches, the allocator) as the
                    # saturation rounds do before they measure.
                    oha_latency(args.rate, 1)
                    latency = oha_latency(args.rate, args.latency_duration)
                    head = results[proxy].setdefault("keep-alive, small", {})
                    for k, v in latency.items():
                        head.setdefault(k, []).append(v)
                    print(f"latency round {rnd} {proxy:15} p50 {latency['p50']:.3f} ms "
                          f"p99 {latency['p99']:.3f} ms p99.9 {latency['p99.9']:.3f} ms", file=sys.stderr)
        scaling_names = [p for p in names if p in PROXIES]
        scaling = run_scaling(args, proxy_cpus, ringlb_bin, work, scaling_names) if args.scaling else None
    finally:
        for o in origins:
            o.terminate()
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        f"Medians of {args.rounds} interleaved rounds; wrk -t{len(cpu_list(LOAD_CORES))} -c{args.conns} "
        f"-d{args.duration}s; proxies on CPU {args.proxy_cores} ({len(proxy_cpus)} worker(s) each), "
        f"wrk/oha/origins on CPU {args.load_cores}.",
        "",
        "| scenario | proxy | requests/s | proxy CPU µs/request | of which kernel | non-2xx |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in SCENARIOS:
        for proxy in results:
            r = results[proxy][name]
            lines.append(f"| {name} | {proxy} | {med(r['rps']):.0f} | {med(r['cpu_us']):.2f} | "
                         f"{med(r['sys_us']):.2f} | {int(sum(r['errors']))} |")
    lines += ["", f"Latency: medians of {args.latency_rounds} interleaved rounds of oha -q {args.rate} "
                  f"-c 32 -z {args.latency_duration}s (latency correction on).",
              "", f"| proxy | p50 ms at {args.rate}/s | p99 ms | p99.9 ms | peak RSS KiB "
                  f"| RSS bytes per idle connection ({args.idle}), 0.5 s / 3 s after the last opened |",
              "| --- | --- | --- | --- | --- | --- |"]
    for proxy in results:
        r = results[proxy]["keep-alive, small"]
        lines.append(f"| {proxy} | {med(r.get('p50', [])):.3f} | {med(r.get('p99', [])):.3f} | "
                     f"{med(r.get('p99.9', [])):.3f} | {med(r.get('peak_rss_kib', [])):.0f} | "
                     f"{med(r.get('idle_bytes_soon', [])):.0f} / {med(r.get('idle_bytes', [])):.0f} |")
    before = results.get("ringlb-baseline", {})
    if before and "ringlb" in results:
        lines += ["", "ringlb / ringlb-baseline (the same configuration, interleaved):"]
        for name in SCENARIOS:
            now, then = results["ringlb"][name], before[name]
            cpu = verdict.ratio(now["cpu_us"], then["cpu_us"])
            lines.append(f"- {name}: CPU per request {verdict.describe(cpu, ratio_form=True)}; "
                         f"requests/s {med(now['rps']) / med(then['rps']):.3f}x")
        now, then = results["ringlb"]["keep-alive, small"], before["keep-alive, small"]
        if now.get("p99"):
            p99 = verdict.difference(now["p99"], then["p99"])
            lines.append(f"- p99 at {args.rate}/s, ringlb - ringlb-baseline: {verdict.describe(p99, ' ms')}")
        if now.get("idle_bytes"):
            lines.append(f"- RSS bytes per idle connection: {med(now['idle_bytes']):.0f} against "
                         f"{med(then['idle_bytes']):.0f}")
    if "ringlb" in results:
        lines += ["", "Verdicts (bench/verdict.py: 90% bootstrap intervals over paired rounds; "
                      "'level' when the interval holds no difference):"]
        for other in ("haproxy", "nginx"):
            if other not in results:
                continue
            ours_head, theirs_head = results["ringlb"]["keep-alive, small"], results[other]["keep-alive, small"]
            if ours_head.get("p99"):
                p99 = verdict.difference(ours_head["p99"], theirs_head["p99"])
                lines.append(f"- p99 at {args.rate}/s, ringlb - {other}: {verdict.describe(p99, ' ms')}")
            for name in SCENARIOS:
                cpu = verdict.ratio(results["ringlb"][name]["cpu_us"], results[other][name]["cpu_us"])
                lines.append(f"- CPU per request, {name}, ringlb / {other}: "
                             f"{verdict.describe(cpu, ratio_form=True)}")
    base = results.get("haproxy", {}).get("keep-alive, small")
    ours = results.get("ringlb", {}).get("keep-alive, small")
    if base and ours and "cpu_us" in base:
        lines += ["", f"ringlb / HAProxy, keep-alive small: CPU per request {med(ours['cpu_us']) / med(base['cpu_us']):.2f}x, "
                      f"requests/s {med(ours['rps']) / med(base['rps']):.2f}x"]
    lines += ["", "Floors, keep-alive small: the same socket work with no HTTP at all, one worker:"]
    if not floors:
        lines.append("skipped: --no-floor, more than one proxy core, no haproxy, or no small scenario")
    else:
        lines += ["", "| floor | requests/s | CPU µs/request | of which kernel | CPU / HAProxy's (HTTP) |",
                  "| --- | --- | --- | --- | --- |"]
        for floor, r in floor_results.items():
            ratio = f"{med(r['cpu_us']) / med(base['cpu_us']):.2f}x" if base and "cpu_us" in base else "-"
            lines.append(f"| {floor} | {med(r['rps']):.0f} | {med(r['cpu_us']):.2f} | "
                         f"{med(r['sys_us']):.2f} | {ratio} |")
        if base and "cpu_us" in base:
            lines.append(f"\n0.75x HAProxy's CPU per request (HTTP): {0.75 * med(base['cpu_us']):.2f} µs")
    lines += [""]
    if scaling is None:
        lines.append("Scaling: not run (--scaling; it needs more cores than a 2-core machine has)")
    else:
        lines += scaling_table(scaling, scaling_names, args)
    table = "\n".join(lines)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"compare-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "results": results, "floors": floor_results,
                    "ringlb_shards": scaling}, indent=2))
    (out_dir / f"compare-{stamp}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
