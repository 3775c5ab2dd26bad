#!/usr/bin/env python3
"""TLS side by side: ringlb vs HAProxy vs nginx terminating TLS in one topology.

The topology, pinning and accounting of bench/compare.py (whose helpers this script
imports): each proxy gets the same cores (--proxy-cores, CPU 1 by default) and one
worker/thread/shard per core, round-robin over the same two `ringlb origin` servers
(plain HTTP, upstream keep-alive on). Every proxy terminates TLS on 127.0.0.1:19443
with the same self-signed certificate for bench.test, generated into a temporary
directory with openssl: ECDSA P-256, and RSA 2048 for one scenario. wrk, openssl
s_time, this script's own Python TLS client and the origins run on the other cores
(--load-cores, CPU 0 by default). Rounds are interleaved (ringlb, haproxy, nginx,
ringlb, ...) and medians are reported, with the ratios ringlb/HAProxy and
ringlb/nginx.

THE comparable figure is the proxy's CPU per operation: utime+stime of the proxy's
processes (from /proc) over the measured run, divided by the requests or handshakes
the client completed. A TLS client's handshake costs about what the server's does,
so the load core, not the proxy, often limits the rate: the "CPU busy" column (proxy
CPU over wall time, 100% = one core) says how loaded the proxy was. At a low load a
proxy's CPU per operation also carries more per-wakeup overhead than at saturation.

Scenarios:
  1. keep-alive: wrk -t1 -c64 https://127.0.0.1:19443/ and /bytes/65536 (wrk speaks
     TLS through OpenSSL; TLS 1.3) -> requests/s, proxy CPU µs per request.
  2. full handshakes: openssl s_time -new -www / (a new TLS connection per request,
     no resumption; one HTTP/1.0 GET through the proxy each, which the proxy answers
     and closes), --stime-procs processes at once on the load cores -> handshakes/s,
     proxy CPU µs per handshake (the proxied request included). ECDSA with TLS 1.3,
     ECDSA with TLS 1.2 (s_time -tls1_2; --no-tls12 skips it), and RSA 2048 with TLS
     1.3 (each proxy restarted with the RSA certificate).
  3. resumed handshakes: openssl s_time -reuse -www / (each process resumes the
     session of its first connection again and again), TLS 1.3 and TLS 1.2. s_time
     prints 'r' for every connection that resumed and '*' for a full handshake; the
     table counts them and a note says when resumption did not happen.
  4. idle memory: on the freshly started proxy (ECDSA), after 100 warm-up requests on
     one connection, --idle TLS connections opened one after another by Python's ssl
     module (SNI bench.test, ALPN http/1.1), one `GET /` each with its response read,
     then all held; RSS growth of the proxy's processes per connection 0.5 s and 3 s
     after the last one opened (compare.py's idle_rss_bytes, over TLS).

Before the rounds each proxy's own configuration check runs (ringlb check, haproxy
-c, nginx -t), and a probe per proxy records the TLS version, cipher, ALPN and
certificate key type a Python client gets, and the answer to s_time's request (GET /
HTTP/1.0, no Host). For ringlb, its /stats `tls` counters (full and resumed
handshakes, failures) are logged after each proxy run.

Nothing is built here: ringlb is --bin (target/release/ringlb by default; build it
with `cargo build --release`). Needs wrk, haproxy, nginx, openssl and taskset
(scripts/setup-bench.sh). Loopback only; every step is bounded (timeouts on every
client and process). With the defaults (3 rounds of 10 s runs) a run takes about 15
minutes. Writes bench/results/tls-<time>.{json,md} (not with --quick, a smoke test
of the script: 1 round, 3 s runs, 500 idle connections) and prints the markdown.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing compare.py
# The /proc accounting and port helpers are compare.py's, so both count alike.
import compare  # noqa: E402
from compare import cpu_list, cpu_ticks, med, memory_kib, tree, wait_port, wait_port_closed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ORIGIN_PORTS = compare.ORIGIN_PORTS
TLS_PORT = 19443
ADMIN_PORT = compare.ADMIN_PORT
PROXIES = ["ringlb", "haproxy", "nginx"]
SERVER_NAME = "bench.test"
LABELS = {"ringlb": "ringlb", "haproxy": "HAProxy", "nginx": "nginx"}

# Scenario keys, in table order.
KA_SMALL = "keep-alive, small"
KA_64K = "keep-alive, 64 KiB"
FULL_EC13 = "full handshake, ECDSA P-256, TLS 1.3"
FULL_EC12 = "full handshake, ECDSA P-256, TLS 1.2"
FULL_RSA13 = "full handshake, RSA 2048, TLS 1.3"
RESUMED13 = "resumed handshake, TLS 1.3"
RESUMED12 = "resumed handshake, TLS 1.2"
IDLE = "idle memory"
KEEPALIVE = {KA_SMALL: "/", KA_64K: "/bytes/65536"}
# Handshake scenarios on the ECDSA proxy: (key, -reuse?, -tls1_2?).
EC_HANDSHAKES = [(FULL_EC13, False, False), (FULL_EC12, False, True),
                 (RESUMED13, True, False), (RESUMED12, True, True)]
TLS12 = {FULL_EC12, RESUMED12}

LOAD_CORES = "0"  # set from --load-cores


def certificates(work):
    """ECDSA P-256 and RSA 2048 self-signed certificates for bench.test:
    {kind: (cert, key, cert+key for HAProxy)}."""
    out = {}
    for kind, newkey in (("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
                         ("rsa", ["-newkey", "rsa:2048"])):
        cert, key, both = work / f"{kind}.pem", work / f"{kind}.key", work / f"{kind}.haproxy.pem"
        made = subprocess.run(
            ["openssl", "req", "-x509", *newkey, "-nodes", "-days", "30",
             "-subj", f"/CN={SERVER_NAME}", "-addext", f"subjectAltName=DNS:{SERVER_NAME}",
             "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True, timeout=120)
        if made.returncode != 0:
            sys.exit(f"openssl req ({kind}) failed:\n{made.stderr}")
        both.write_text(cert.read_text() + key.read_text())
        out[kind] = (cert, key, both)
    return out


def configs(work, ringlb_bin, workers, io, certs):
    """Each proxy's command for each certificate kind: {kind: {proxy: argv}}."""
    backends = ", ".join(f'{{ name = "o{i}", address = "127.0.0.1:{p}" }}'
                         for i, p in enumerate(ORIGIN_PORTS))
    servers = "".join(f"    server o{i} 127.0.0.1:{p}\n" for i, p in enumerate(ORIGIN_PORTS))
    upstreams = "".join(f"        server 127.0.0.1:{p};\n" for p in ORIGIN_PORTS)
    commands = {}
    for kind, (cert, key, both) in certs.items():
        ringlb_cfg, haproxy_cfg, nginx_cfg = (work / f"ringlb-{kind}.toml", work / f"haproxy-{kind}.cfg",
                                              work / f"nginx-{kind}.conf")
        ringlb_cfg.write_text(
            f'[server]\nshards = {workers}\nio = "{io}"\n\n'
            f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"\n\n'
            '[logging]\nlevel = "warn"\n\n'
            f'[[listeners]]\nname = "https"\naddress = "127.0.0.1:{TLS_PORT}"\n'
            f'tls = {{ certificates = [ {{ cert = "{cert}", key = "{key}" }} ], default = "{SERVER_NAME}" }}\n\n'
            '[[routes]]\nname = "all"\nlistener = "https"\ncluster = "app"\n\n'
            '[[clusters]]\nname = "app"\nhealth_check = { kind = "none" }\n'
            f"backends = [ {backends} ]\n"
        )
        # compare.py's HAProxy (mode http, http-reuse always), the bind with TLS. Its
        # defaults keep a session cache (tune.ssl.cachesize 20000) and tickets.
        haproxy_cfg.write_text(
            f"global\n    nbthread {workers}\n    maxconn 9000\n\n"
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
            "    timeout server 30s\n    timeout http-keep-alive 60s\n\n"
            f"frontend fe\n    bind 127.0.0.1:{TLS_PORT} ssl crt {both} alpn http/1.1 ssl-min-ver TLSv1.2\n"
            "    default_backend be\n\n"
            f"backend be\n    balance roundrobin\n    http-reuse always\n{servers}"
        )
        # compare.py's nginx (upstream keepalive 64), the listener with TLS.
        nginx_cfg.write_text(
            f"worker_processes {workers};\ndaemon off;\nerror_log {work}/nginx-error.log warn;\n"
            f"pid {work}/nginx.pid;\nworker_rlimit_nofile 19000;\n"
            "events { worker_connections 18000; }\n"
            "http {\n    access_log off;\n"
            f"    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;\n"
            f"    fastcgi_temp_path {work}/fastcgi;\n    uwsgi_temp_path {work}/uwsgi;\n"
            f"    scgi_temp_path {work}/scgi;\n    keepalive_requests 1000000;\n"
            f"    upstream origins {{\n{upstreams}        keepalive 64;\n    }}\n"
            f"    server {{\n        listen 127.0.0.1:{TLS_PORT} ssl;\n"
            f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
            "        ssl_session_cache shared:SSL:10m;\n        ssl_session_tickets on;\n"
            "        location / {\n            proxy_pass http://origins;\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            "            proxy_buffering off;\n        }\n    }\n}\n"
        )
        commands[kind] = {
            "ringlb": [str(ringlb_bin), "run", "--config", str(ringlb_cfg)],
            "haproxy": ["haproxy", "-f", str(haproxy_cfg), "-db"],
            "nginx": ["nginx", "-p", str(work), "-c", str(nginx_cfg)],
        }
        commands[kind]["checks"] = {
            "ringlb": [str(ringlb_bin), "check", "--config", str(ringlb_cfg)],
            "haproxy": ["haproxy", "-c", "-f", str(haproxy_cfg)],
            "nginx": ["nginx", "-t", "-p", str(work), "-c", str(nginx_cfg)],
        }
    return commands


def check_configs(commands, names):
    """Every proxy's own configuration check, for both certificates, before any
    round: a refused file fails here with the proxy's words, not as a port that never
    opens. Returns the warnings printed by checks that passed."""
    warnings = []
    for kind, cmds in commands.items():
        for name in names:
            out = subprocess.run(cmds["checks"][name], capture_output=True, text=True, timeout=60)
            text = (out.stdout + out.stderr).strip()
            if out.returncode != 0:
                sys.exit(f"{name}'s configuration ({kind} certificate) does not check "
                         f"({shlex.join(cmds['checks'][name])}, exit {out.returncode}):\n{text}")
            for line in text.splitlines():
                if re.search(r"warn", line, re.I):
                    warnings.append(f"{name} check ({kind}): {line.strip()}")
    return warnings


@contextlib.contextmanager
def running(cores, command, log):
    """compare.running on the TLS port, the proxy's stdout and stderr kept in `log`
    so that a proxy that does not start is reported in its own words."""
    wait_port_closed(TLS_PORT)
    with open(log, "w") as out:
        proc = subprocess.Popen(["taskset", "-c", cores, *command], stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_port(TLS_PORT)
        except RuntimeError:
            proc.poll()
            raise RuntimeError(f"{shlex.join(command)} did not open port {TLS_PORT} "
                               f"(exit status {proc.returncode}); its output:\n{Path(log).read_text()}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def cpu_since(pids, t0):
    """Microseconds of (user + system, system) CPU since `t0`."""
    user, system = cpu_ticks(pids)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return (user - t0[0] + system - t0[1]) * tick_us, (system - t0[1]) * tick_us


def wrk(path, seconds, conns):
    """compare.wrk over https: (requests/s, requests, errors, their text)."""
    threads = len(cpu_list(LOAD_CORES))
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORES, "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s",
         f"https://127.0.0.1:{TLS_PORT}{path}"],
        capture_output=True, text=True, timeout=seconds + 30,
    )
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    requests = re.search(r"(\d+) requests in", out.stdout)
    if out.returncode != 0 or not rps or not requests:
        return float("nan"), 0, 1, f"wrk failed (exit {out.returncode}): {(out.stdout + out.stderr).strip()[-300:]}"
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    sock = re.search(r"Socket errors: (.*)", out.stdout)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(n) for n in re.findall(r"\d+", sock.group(1)))
                                                         if sock else 0)
    text = f"non-2xx {non2xx.group(1) if non2xx else 0}, socket errors: {sock.group(1) if sock else 'none'}"
    return float(rps.group(1)), int(requests.group(1)), errors, text


def keepalive(proc, path, args):
    """A 1 s warm-up, then the measured wrk run: a result row."""
    wrk(path, 1, args.conns)
    pids = tree(proc.pid)  # after the warm-up: nginx's worker is forked by now
    t0, start = cpu_ticks(pids), time.monotonic()
    rps, requests, errors, text = wrk(path, args.duration, args.conns)
    wall = time.monotonic() - start
    cpu_us, sys_us = cpu_since(pids, t0)
    per = max(requests, 1)
    return dict(rate=rps, cpu_us=cpu_us / per, sys_us=sys_us / per, busy=cpu_us / (wall * 1e6) * 100,
                errors=errors), text


def parse_s_time(text):
    """(connections, resumed among them, bytes read per connection or None, whether
    s_time printed its summary) from one s_time's output. Its progress line has one
    character per connection: 'r' resumed, '*' (or 't', '3' for old versions) a full
    handshake. A failed connection ends s_time at once, without the summary."""
    marks = "".join(re.findall(r"^[rt3*]+$", text, re.M))
    summary = re.search(r"(\d+) connections in \d+ real seconds, (\d+) bytes read per connection", text)
    conns = int(summary.group(1)) if summary else len(marks)
    return conns, marks.count("r"), int(summary.group(2)) if summary else None, bool(summary)


def s_time(proc, seconds, reuse, tls12, procs, work):
    """`procs` openssl s_time processes at once on the load cores: a result row and
    notes. Their output goes to files (no pipe to fill while another is waited for);
    the rate is over the wall time from the first start to the last exit."""
    cmd = ["taskset", "-c", LOAD_CORES, "openssl", "s_time", "-connect", f"127.0.0.1:{TLS_PORT}",
           "-www", "/", "-time", str(seconds), "-reuse" if reuse else "-new"] + (["-tls1_2"] if tls12 else [])
    pids = tree(proc.pid)
    outs = [work / f"s_time-{i}.out" for i in range(procs)]
    t0, start = cpu_ticks(pids), time.monotonic()
    running_procs = []
    for path in outs:
        with open(path, "w") as f:
            running_procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT))
    deadline = start + seconds + 30
    notes = []
    for p in running_procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            notes.append("s_time timed out and was killed")
    wall = time.monotonic() - start
    cpu_us, sys_us = cpu_since(pids, t0)
    conns = resumed = errors = 0
    per_conn_bytes = []
    for p, path in zip(running_procs, outs):
        text = path.read_text(errors="replace")
        n, r, b, summary = parse_s_time(text)
        conns, resumed = conns + n, resumed + r
        if b is not None:
            per_conn_bytes.append(b)
        if p.returncode != 0 or not summary:
            errors += 1
            tail = [line for line in text.splitlines() if line.strip() and not re.fullmatch(r"[rt3*]+", line)]
            notes.append(f"s_time exit {p.returncode} after {n} connections"
                         f"{'' if summary else ', no summary'}: {' | '.join(tail[-3:])[-300:]}")
        elif b == 0:
            errors += 1
            notes.append("s_time read 0 bytes per connection: the proxy did not answer GET / HTTP/1.0")
    per = max(conns, 1)
    row = dict(rate=conns / wall, cpu_us=cpu_us / per, sys_us=sys_us / per, busy=cpu_us / (wall * 1e6) * 100,
               reused=resumed / per * 100, conns=conns, errors=errors,
               bytes=min(per_conn_bytes) if per_conn_bytes else float("nan"))
    return row, notes


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_connect(ctx, timeout=10):
    raw = socket.create_connection(("127.0.0.1", TLS_PORT), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
    except BaseException:
        raw.close()
        raise


def read_response(sock, limit=1 << 20):
    """(status, body) of one response: the head, then Content-Length bytes, a chunked
    body up to its last chunk, or (neither) up to the close. Bounded by the socket's
    timeout and by `limit` bytes."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].split()
    status = int(first[1]) if len(first) > 1 and first[1].isdigit() else 0
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    chunked = re.search(rb"(?im)^transfer-encoding:.*chunked", head)
    while len(body) < limit:
        if length and len(body) >= int(length.group(1)):
            break
        if chunked and body.endswith(b"0\r\n\r\n"):
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def key_kind(der):
    if b"\x2a\x86\x48\xce\x3d\x02\x01" in der:  # id-ecPublicKey
        return "ECDSA"
    if b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" in der:  # rsaEncryption
        return "RSA"
    return "?"


def probe(ctx):
    """What a client gets: TLS version, cipher, ALPN, the certificate's key, and the
    answer to s_time's request (GET / HTTP/1.0 without Host): its status and
    whether the proxy then closes (s_time reads up to the close)."""
    try:
        with tls_connect(ctx) as s:
            info = {"version": s.version(), "cipher": s.cipher()[0], "alpn": s.selected_alpn_protocol(),
                    "key": key_kind(s.getpeercert(binary_form=True) or b"")}
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            info["http10_status"], _ = read_response(s)
            s.settimeout(3)
            try:
                info["closes"] = s.recv(1) == b""
            except (socket.timeout, ssl.SSLError, OSError):
                info["closes"] = False
        return info
    except (OSError, ssl.SSLError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def idle_rss_bytes(proc, count, ctx):
    """compare.idle_rss_bytes over TLS: on the fresh proxy, 100 warm-up requests on
    one connection, then `count` TLS connections opened one after another, one
    request and response each, all held. RSS growth per connection 0.5 s and 3 s
    after the last one opened, and how many opened (fewer than `count` on an error,
    with its text)."""
    request = f"GET / HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode()
    with tls_connect(ctx) as warm:
        for _ in range(100):
            warm.sendall(request)
            read_response(warm)
    time.sleep(1.5)  # statistics reports reach ringlb's control thread every second
    pids = tree(proc.pid)
    before = memory_kib(pids, "VmRSS")
    conns, error = [], None
    try:
        for _ in range(count):
            try:
                s = tls_connect(ctx)
                conns.append(s)
                s.sendall(request)
                status, _ = read_response(s)
                if status != 200:
                    error = f"connection {len(conns)}: status {status}"
                    break
            except (OSError, ssl.SSLError) as e:
                error = f"connection {len(conns) + 1}: {type(e).__name__}: {e}"
                break
        opened = max(len(conns), 1)
        time.sleep(0.5)  # let the proxy settle its buffers
        soon = memory_kib(pids, "VmRSS")
        time.sleep(2.5)  # steady state: ringlb returns memory freed over 1 s ago, once a second
        later = memory_kib(pids, "VmRSS")
    finally:
        for s in conns:
            s.close()
    return (soon - before) * 1024 / opened, (later - before) * 1024 / opened, len(conns), error


def ringlb_tls_stats():
    """ringlb's /stats `tls` object (full and resumed handshakes, failures), or the
    error text."""
    time.sleep(1.2)  # shards report to the control thread once a second
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/stats", timeout=5) as r:
            tls = json.loads(r.read()).get("tls", {})
        failures = {k: v for k, v in tls.get("failures", {}).items() if v}
        return {"handshakes": tls.get("handshakes"), "failures": failures,
                "versions": {k: v for k, v in tls.get("versions", {}).items() if v}}
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def record(results, proxy, scenario, row):
    entry = results[proxy].setdefault(scenario, {})
    for key, value in row.items():
        entry.setdefault(key, []).append(value)


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine(ringlb_bin):
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = re.sub(r"\s*Copyright.*", "", first_line(["wrk", "--version"]))
    return {
        "cpu": f"{model}, {os.cpu_count()} CPUs",
        "kernel": platform.release(),
        "ringlb": first_line([str(ringlb_bin), "--version"]),
        "haproxy": re.sub(r"^HAProxy version (\S+).*", r"HAProxy \1", first_line(["haproxy", "-v"])),
        "nginx": re.sub(r"^nginx version: nginx/", "nginx ", first_line(["nginx", "-v"])),
        "openssl": first_line(["openssl", "version"]),
        "wrk": wrk_version,
        "python": f"Python {platform.python_version()} ({ssl.OPENSSL_VERSION})",
    }


def ratio(a, b):
    return f"{a / b:.2f}x" if b and a == a and b == b else "-"


def table(lines, results, scenario, title, columns):
    """Appends one scenario's table to `lines`: a row per proxy (medians, or sums),
    then ringlb / HAProxy and ringlb / nginx for the columns that compare. Each
    column is (heading, key, format, "med" or "sum", compares)."""
    present = [p for p in results if scenario in results[p]]
    if not present:
        return
    lines.extend(["", title, "", "| proxy | " + " | ".join(c[0] for c in columns) + " |",
                  "| --- |" + " --- |" * len(columns)])
    for proxy in present:
        r = results[proxy][scenario]
        lines.append(f"| {proxy} | " + " | ".join(fmt.format(med(r[key])) if agg == "med"
                                                  else str(int(sum(r[key])))
                                                  for _, key, fmt, agg, _ in columns) + " |")
    ours = results.get("ringlb", {}).get(scenario)
    for other in ("haproxy", "nginx"):
        theirs = results.get(other, {}).get(scenario)
        if ours and theirs:
            lines.append(f"| ringlb / {LABELS[other]} | " + " | ".join(
                ratio(med(ours[key]), med(theirs[key])) if compares else ""
                for _, key, _, _, compares in columns) + " |")


def printed_notes(work):
    """What the proxies printed into `work`/*.log (warnings, errors), once per
    distinct line, at most 20."""
    notes, seen = [], set()
    for log in sorted(work.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            text = re.sub(r"\d+", "N", line.strip())  # timestamps and pids aside
            proxy = log.name.split("-")[0]
            if line.strip() and (proxy, text) not in seen and len(seen) < 20:
                seen.add((proxy, text))
                notes.append(f"{proxy} printed: {line.strip()[:300]}")
    return notes


def stop_all(procs):
    """Terminates `procs` (the origins), killing any that do not exit in 10 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk and s_time run")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections")
    ap.add_argument("--stime-procs", type=int, default=2,
                    help="openssl s_time processes at once (each makes one connection at a time)")
    ap.add_argument("--idle", type=int, default=4000, help="idle TLS connections for the RSS figure")
    ap.add_argument("--no-tls12", action="store_true", help="skip the TLS 1.2 handshake scenarios")
    ap.add_argument("--io", default="auto", choices=["auto", "io_uring", "epoll"],
                    help="ringlb's server.io")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--proxy-cores", default="1",
                    help="CPUs every proxy is pinned to (taskset list); one worker per CPU")
    ap.add_argument("--load-cores", default="0",
                    help="CPUs for wrk, s_time, the Python client and the origins (taskset list)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "ringlb"),
                    help="the ringlb binary (not built by this script)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test the script: 1 round, 3 s runs, 500 idle connections, no files written")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.idle = 1, 3, min(args.idle, 500)
    global LOAD_CORES
    LOAD_CORES = args.load_cores
    proxy_cpus, load_cpus = cpu_list(args.proxy_cores), cpu_list(args.load_cores)
    if set(proxy_cpus) & set(load_cpus):
        sys.exit("--proxy-cores and --load-cores overlap: the proxy would compete with its load")
    names = [p for p in args.proxies.split(",") if p]
    unknown = [p for p in names if p not in PROXIES]
    if unknown:
        sys.exit(f"unknown proxies {unknown}: choose among {PROXIES}")
    for tool in ["wrk", "openssl", "taskset"] + [p for p in names if p != "ringlb"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup-bench.sh")
    ringlb_bin = Path(args.bin).resolve()
    if not os.access(ringlb_bin, os.X_OK):
        sys.exit(f"{ringlb_bin} is not an executable: build it (cargo build --release) or pass --bin")
    # The idle scenario holds --idle client sockets here, and the proxies inherit
    # the limit (HAProxy with maxconn 9000 wants about 18,000).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    if args.idle + 100 > min(hard, 65536):
        sys.exit(f"--idle {args.idle} needs more descriptors than RLIMIT_NOFILE's hard limit {hard}")
    # This script's own TLS client (the probe, the idle connections) runs on the
    # load cores too; the proxies are pinned with taskset, whatever this process's mask.
    os.sched_setaffinity(0, load_cpus)

    info = machine(ringlb_bin)
    work = Path(tempfile.mkdtemp(prefix="ringlb-tls-"))
    for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (work / d).mkdir()
    results = {p: {} for p in names}
    notes, probes, stats = [], {}, {}
    origins = []
    try:
        certs = certificates(work)
        commands = configs(work, ringlb_bin, len(proxy_cpus), args.io, certs)
        notes += check_configs(commands, names)
        origins = [
            subprocess.Popen(["taskset", "-c", args.load_cores, str(ringlb_bin), "origin", "--listen",
                              f"127.0.0.1:{p}", "--name", f"o{i}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, p in enumerate(ORIGIN_PORTS)
        ]
        for p in ORIGIN_PORTS:
            wait_port(p)
        ctx = client_context()
        ec_handshakes = [s for s in EC_HANDSHAKES if not (args.no_tls12 and s[0] in TLS12)]
        for rnd in range(1, args.rounds + 1):
            # The ECDSA certificate: idle memory on the fresh proxy, keep-alive, and
            # the handshakes.
            for proxy in names:
                log = work / f"{proxy}-ec-{rnd}.log"
                with running(args.proxy_cores, commands["ec"][proxy], log) as proc:
                    if rnd == 1:
                        probes[f"{proxy} (ECDSA)"] = probe(ctx)
                    if args.idle:
                        soon, later, opened, error = idle_rss_bytes(proc, args.idle, ctx)
                        record(results, proxy, IDLE, dict(soon=soon, later=later, opened=opened,
                                                          errors=int(error is not None)))
                        if error:
                            notes.append(f"round {rnd} {proxy} {IDLE}: opened {opened} of {args.idle}: {error}")
                        print(f"round {rnd} {proxy:8} {IDLE:38} {soon:8.0f} / {later:8.0f} bytes per connection"
                              f" ({opened} connections)", file=sys.stderr)
                    for scenario, path in KEEPALIVE.items():
                        row, text = keepalive(proc, path, args)
                        record(results, proxy, scenario, row)
                        if row["errors"]:
                            notes.append(f"round {rnd} {proxy} {scenario}: {text}")
                        print(f"round {rnd} {proxy:8} {scenario:38} {row['rate']:10.0f} req/s "
                              f"{row['cpu_us']:8.2f} µs/req  busy {row['busy']:3.0f}%  {text}", file=sys.stderr)
                    for scenario, reuse, tls12 in ec_handshakes:
                        row, run_notes = s_time(proc, args.duration, reuse, tls12, args.stime_procs, work)
                        record(results, proxy, scenario, row)
                        notes += [f"round {rnd} {proxy} {scenario}: {n}" for n in run_notes]
                        print(f"round {rnd} {proxy:8} {scenario:38} {row['rate']:10.0f} hs/s "
                              f"{row['cpu_us']:8.2f} µs/hs   busy {row['busy']:3.0f}%  "
                              f"resumed {row['reused']:3.0f}% of {row['conns']}", file=sys.stderr)
                    record(results, proxy, "rss", dict(peak_kib=memory_kib(tree(proc.pid), "VmHWM")))
                    if proxy == "ringlb":
                        stats.setdefault(f"round {rnd}, ECDSA", ringlb_tls_stats())
                        print(f"round {rnd} ringlb /stats tls: {stats[f'round {rnd}, ECDSA']}", file=sys.stderr)
                    if proc.poll() is not None:
                        notes.append(f"round {rnd} {proxy}: exited with {proc.returncode} during the round")
            # The RSA certificate: full handshakes only, on a fresh proxy after a 1 s warm-up.
            for proxy in names:
                log = work / f"{proxy}-rsa-{rnd}.log"
                with running(args.proxy_cores, commands["rsa"][proxy], log) as proc:
                    if rnd == 1:
                        probes[f"{proxy} (RSA)"] = probe(ctx)
                    s_time(proc, 1, False, False, 1, work)
                    row, run_notes = s_time(proc, args.duration, False, False, args.stime_procs, work)
                    record(results, proxy, FULL_RSA13, row)
                    notes += [f"round {rnd} {proxy} {FULL_RSA13}: {n}" for n in run_notes]
                    print(f"round {rnd} {proxy:8} {FULL_RSA13:38} {row['rate']:10.0f} hs/s "
                          f"{row['cpu_us']:8.2f} µs/hs   busy {row['busy']:3.0f}%  "
                          f"resumed {row['reused']:3.0f}% of {row['conns']}", file=sys.stderr)
                    if proxy == "ringlb":
                        stats.setdefault(f"round {rnd}, RSA", ringlb_tls_stats())
                    if proc.poll() is not None:
                        notes.append(f"round {rnd} {proxy}: exited with {proc.returncode} during the round")
        notes += printed_notes(work)
    finally:
        stop_all(origins)
        shutil.rmtree(work, ignore_errors=True)

    # Resumption that did not happen, or happened where it should not have.
    for proxy in results:
        for scenario, r in results[proxy].items():
            if "reused" not in r:
                continue
            got = med(r["reused"])
            if scenario.startswith("resumed") and got < 99:
                notes.append(f"{proxy} {scenario}: resumption did not happen for every connection "
                             f"(median {got:.1f}% resumed): the figure is partly full handshakes")
            if scenario.startswith("full") and got > 0:
                notes.append(f"{proxy} {scenario}: {got:.1f}% of connections resumed (expected none)")

    threads = len(cpu_list(LOAD_CORES))
    command = "python3 " + shlex.join(sys.argv)
    lines = [
        f"## TLS side by side: ringlb, HAProxy and nginx ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `{command}`" + (" (a smoke test: 1 round, 3 s runs)" if args.quick else ""),
        "",
        f"Machine: {info['cpu']}; Linux `{info['kernel']}`. Versions: {info['ringlb']} (`server.io = "
        f"\"{args.io}\"`), {info['haproxy']}, {info['nginx']}, {info['openssl']}, {info['wrk']}, "
        f"{info['python']}.",
        "",
        f"Medians of {args.rounds} interleaved rounds; every proxy with {len(proxy_cpus)} worker(s) on "
        f"CPU {args.proxy_cores}, TLS on 127.0.0.1:{TLS_PORT} (self-signed ECDSA P-256 certificate for "
        f"{SERVER_NAME}, RSA 2048 where named), round-robin over two `ringlb origin`s with upstream "
        f"keep-alive; wrk, openssl s_time, the Python client and the origins on CPU {args.load_cores}. "
        "Proxy CPU is utime+stime of the proxy's processes over the measured run per request or "
        "handshake; CPU busy is that CPU over the wall time (100% = one core): a client's handshake "
        "costs about what the server's does, so below 100% the load core, not the proxy, set the rate.",
        "",
        "What a client got (Python ssl, SNI bench.test, ALPN http/1.1) and the answer to s_time's "
        "`GET / HTTP/1.0` (no Host):",
        "",
        "| proxy | TLS | cipher | ALPN | certificate | GET / HTTP/1.0 | then closed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in probes.items():
        if "error" in p:
            lines.append(f"| {name} | probe failed: {p['error']} | | | | | |")
        else:
            lines.append(f"| {name} | {p['version']} | {p['cipher']} | {p['alpn']} | {p['key']} | "
                         f"{p['http10_status']} | {'yes' if p['closes'] else 'no'} |")

    rate_cols = [("requests/s", "rate", "{:.0f}", "med", True),
                 ("proxy CPU µs/request", "cpu_us", "{:.2f}", "med", True),
                 ("of which kernel", "sys_us", "{:.2f}", "med", True),
                 ("proxy CPU busy", "busy", "{:.0f}%", "med", False),
                 ("errors", "errors", "", "sum", False)]
    for scenario, path in KEEPALIVE.items():
        table(lines, results, scenario, f"**{scenario}** (wrk -t{threads} -c{args.conns} -d{args.duration}s "
                        f"https://127.0.0.1:{TLS_PORT}{path}, after a 1 s warm-up)", rate_cols)
    hs_cols = [("handshakes/s", "rate", "{:.0f}", "med", True),
               ("proxy CPU µs/handshake", "cpu_us", "{:.1f}", "med", True),
               ("of which kernel", "sys_us", "{:.1f}", "med", True),
               ("proxy CPU busy", "busy", "{:.0f}%", "med", False),
               ("resumed", "reused", "{:.0f}%", "med", False),
               ("failed runs", "errors", "", "sum", False)]
    for scenario, reuse, tls12 in EC_HANDSHAKES + [(FULL_RSA13, False, False)]:
        flags = ("-reuse" if reuse else "-new") + (" -tls1_2" if tls12 else "")
        table(lines, results, scenario, f"**{scenario}** ({args.stime_procs} × openssl s_time -connect 127.0.0.1:{TLS_PORT} "
                        f"{flags} -www / -time {args.duration} at once; each connection one proxied "
                        "GET / HTTP/1.0, closed by the proxy)", hs_cols)
    table(lines, results, IDLE, f"**{IDLE}** ({args.idle} TLS connections, one GET / each, held; RSS growth of the "
                "proxy's processes per connection, on the fresh proxy after 100 warm-up requests)",
          [("bytes per connection, 0.5 s", "soon", "{:.0f}", "med", True),
           ("3 s after the last opened", "later", "{:.0f}", "med", True),
           ("connections opened", "opened", "{:.0f}", "med", False),
           ("failed runs", "errors", "", "sum", False)])
    table(lines, results, "rss", "**peak RSS** (VmHWM of the proxy's processes at the end of the ECDSA run)",
          [("peak RSS KiB", "peak_kib", "{:.0f}", "med", True)])
    if stats:
        lines += ["", "ringlb's /stats `tls` at the end of each run (since its start):", ""]
        lines += [f"- {k}: {json.dumps(v)}" for k, v in stats.items()]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    text = "\n".join(lines)
    if not args.quick:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = ROOT / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"tls-{stamp}.json").write_text(json.dumps(
            {"args": vars(args), "command": command, "machine": info, "probes": probes,
             "ringlb_tls_stats": stats, "results": results, "notes": notes}, indent=2))
        (out_dir / f"tls-{stamp}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
