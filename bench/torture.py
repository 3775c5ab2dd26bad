#!/usr/bin/env python3
"""Faults, floods and a soak (issue 13): ringlb against hostile clients, bad
backends and time.

Each scenario starts its own ringlb (`ringlb run --config FILE`, a file written to
target/torture/run-MODE/) and its own `ringlb origin`s on loopback, runs, and prints a
block headed by its name and its pass criteria, then its figures. A summary table
comes last; the exit status is 1 if any scenario failed.

  never-read         a backend that accepts and never reads gets a large upload: the
                     client gets a 502/504 or a close by backend_response + 2 s, the
                     error is counted, the backend connection is let go; a backend
                     that answers garbage gives a 502
  slowloris          connections sending a request head one byte every 2 s, while a
                     keep-alive client measures latency (against an unloaded run just
                     before); every slow connection is cut at header_read
  flood              many concurrent keep-alive clients; a normal client is still
                     served; with server.max_connections reached, extra connections
                     are closed unanswered and the open ones still answer; out of file
                     descriptors (RLIMIT_NOFILE 1024, idle clients, then GET clients):
                     CPU, log lines, and recovery
  slow-heads-memory  connections each sending almost limits.max_header_bytes of head,
                     slowly, never finishing: peak RSS against a bound; all cut at
                     header_read
  backend-churn      one of three origins SIGKILLed and restarted every 3 s under GET
                     and POST load: no GET fails, a POST fails only as a 502
  reload-storm       SIGHUPs alternating two configurations under load: no failed
                     request, no descriptor leaked
  soak               mixed traffic at a fixed rate (keep-alive, a new connection per
                     request, 1 MiB bodies both ways, expected errors, WebSocket echo,
                     a TCP listener): RSS and descriptors sampled every 5 s, plotted to
                     target/torture/soak-MODE.svg; flat RSS and descriptor counts

Usage:
  python3 bench/torture.py                  # full: the figures for RELIABILITY.md (~13 min)
  python3 bench/torture.py --short          # CI: under 3 minutes on 2 cores
  python3 bench/torture.py --only flood soak --bin target/release/ringlb

Python 3 standard library only (no wrk or oha needed); loopback only; every wait and
loop is bounded in time, and a watchdog ends the run if it overstays. Raises its own
RLIMIT_NOFILE soft limit to the hard limit (the full flood holds 11,000 client
sockets; with a lower limit it shrinks and says so). Writes target/torture/torture-MODE.json (every block), the soak's SVG and
samples, and keeps each ringlb's configuration and log in target/torture/run-MODE/.
"""

import argparse
import base64
import collections
import errno
import hashlib
import heapq
import http.client
import json
import math
import multiprocessing
import os
import random
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import shutil
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIOS = ["never-read", "slowloris", "flood", "slow-heads-memory", "backend-churn",
             "reload-storm", "soak"]


class Params:
    """Sizes of the full run and of --short."""

    def __init__(self, short):
        self.short = short
        self.mode = "short" if short else "full"

    def __call__(self, full, short):
        return short if self.short else full


# --------------------------------------------------------------------------------
# Processes, ports and /proc

CHILDREN = []  # every Popen this script started (stopped on exit)


def spawn(cmd, stderr=subprocess.DEVNULL, preexec_fn=None):
    proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr,
                            preexec_fn=preexec_fn, start_new_session=True)
    CHILDREN.append(proc)
    return proc


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    """Stops one process this script started; returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
    return proc.returncode


def stop_all():
    for proc in reversed(CHILDREN):
        if proc.poll() is None:
            stop(proc, signal.SIGKILL, 5)


USED_PORTS = set()


def free_port():
    """A free loopback port below the ephemeral range (32768+ here), so that no client
    socket's source port can take it while an origin is down."""
    for _ in range(2000):
        port = random.randrange(20000, 32000)
        if port in USED_PORTS:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        USED_PORTS.add(port)
        return port
    raise RuntimeError("no free port")


def wait_port(port, timeout=10.0, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} "
                               f"opened\n{tail}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout} s")


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def proc_cpu_ticks(pid):
    """utime + stime of the process, all threads, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def pct(values, q):
    """The q-quantile (0..1) of values, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


# --------------------------------------------------------------------------------
# Configuration files

def tv(value):
    """A TOML value on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {tv(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[ " + ", ".join(tv(v) for v in value) + " ]"
    return json.dumps(str(value))


def toml_config(admin_port, listeners, routes, clusters, server=None, timeouts=None,
                limits=None, level="warn"):
    """A full-form file. Every scenario's timeouts get a 1 s shutdown_grace so that
    stopping ringlb is quick."""
    out = []

    def section(name, entries):
        out.append(f"[{name}]")
        out.extend(f"{k} = {tv(v)}" for k, v in entries.items())
        out.append("")

    section("server", server or {})
    section("admin", {"listen": f"127.0.0.1:{admin_port}"})
    section("timeouts", {"shutdown_grace": "1s", **(timeouts or {})})
    if limits:
        section("limits", limits)
    section("logging", {"level": level})
    for kind, items in (("listeners", listeners), ("routes", routes), ("clusters", clusters)):
        for item in items:
            out.append(f"[[{kind}]]")
            out.extend(f"{k} = {tv(v)}" for k, v in item.items())
            out.append("")
    return "\n".join(out)


def backends(origins, **extra):
    return [{"name": o.name, "address": f"127.0.0.1:{o.port}", **extra} for o in origins]


# --------------------------------------------------------------------------------
# The processes under test

class Origin:
    """`ringlb origin` on a port of its own (kept across restarts)."""

    def __init__(self, ctx, name, port=None):
        self.ctx, self.name = ctx, name
        self.port = port or free_port()
        self.proc = None

    def start(self):
        self.proc = spawn([self.ctx.bin, "origin", "--listen", f"127.0.0.1:{self.port}",
                           "--name", self.name])
        wait_port(self.port, proc=self.proc)
        return self

    def kill(self):
        stop(self.proc, signal.SIGKILL, 5)

    def stop(self):
        stop(self.proc, signal.SIGKILL, 5)


class Ringlb:
    """One `ringlb run`, its configuration file and its log (stderr)."""

    def __init__(self, ctx, tag, port, admin_port):
        self.ctx, self.tag = ctx, tag
        self.port, self.admin_port = port, admin_port
        self.config_path = ctx.work / f"{tag}.toml"
        self.log_path = ctx.work / f"{tag}.log"
        self.proc = None
        self._log = None

    def write_config(self, text):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def start(self, config, nofile=None, wait_listener=True):
        self.write_config(config)
        self._log = open(self.log_path, "wb")
        preexec = None
        if nofile:
            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = spawn([self.ctx.bin, "run", "--config", self.config_path],
                          stderr=self._log, preexec_fn=preexec)
        wait_port(self.admin_port, proc=self.proc, log=self.log_path)
        if wait_listener:
            wait_port(self.port, proc=self.proc, log=self.log_path)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM (graceful, 1 s grace), SIGKILL after 10 s; the exit code."""
        code = stop(self.proc, signal.SIGTERM, 10)
        if self._log:
            self._log.close()
            self._log = None
        return code

    def admin(self, path, timeout=5.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stats(self):
        status, body = self.admin("/stats")
        if status != 200:
            raise RuntimeError(f"/stats answered {status}")
        return json.loads(body)

    def metric(self, name):
        """The sum of a /metrics family's samples, or None if it is absent."""
        status, body = self.admin("/metrics")
        total, seen = 0.0, False
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(name) and (line[len(name):len(name) + 1] in (" ", "{")):
                seen = True
                total += float(line.rsplit(" ", 1)[1])
        return total if seen else None

    def rss_kib(self):
        return proc_rss_kib(self.pid)

    def fds(self):
        return proc_fds(self.pid)

    def cpu_ticks(self):
        return proc_cpu_ticks(self.pid)

    def log_lines(self):
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def count_log(self, needle):
        return sum(1 for line in self.log_lines() if needle in line)


# --------------------------------------------------------------------------------
# HTTP and WebSocket clients (blocking, one connection each)

class Closed(Exception):
    """The connection ended before a whole response."""


class Http:
    """A keep-alive HTTP/1.1 client on one connection (reconnects when needed)."""

    def __init__(self, port, timeout=10.0, host="torture"):
        self.port, self.timeout, self.host = port, timeout, host
        self.sock = None
        self.buf = bytearray()

    def connect(self):
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def request(self, method, path, body=None, headers=(), close=False):
        """(status, headers, body); raises OSError or Closed when the exchange fails."""
        if self.sock is None:
            self.connect()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        lines.extend(headers)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            if body is not None and len(body) > 64 * KiB:
                self.sock.sendall(head)
                self.sock.sendall(body)
            else:
                self.sock.sendall(head + (body or b""))
            status, hdrs, data = self.read_response(method == "HEAD")
        except BaseException:
            self.close()
            raise
        if close or hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data

    def _fill(self):
        chunk = self.sock.recv(256 * KiB)
        if not chunk:
            raise Closed(f"closed after {len(self.buf)} bytes")
        self.buf += chunk

    def _line(self):
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def read_response(self, head_only=False):
        while True:
            while (i := self.buf.find(b"\r\n\r\n")) < 0:
                if len(self.buf) > 64 * KiB:
                    raise Closed("response head over 64 KiB")
                self._fill()
            head = bytes(self.buf[:i]).decode("latin-1")
            del self.buf[:i + 4]
            lines = head.split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            hdrs = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                hdrs[name.strip().lower()] = value.strip()
            if 100 <= status < 200 and status != 101:
                continue
            break
        if head_only or status in (101, 204, 304):
            return status, hdrs, b""
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, hdrs, bytes(body)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                del self.buf[:size + 2]
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                self._fill()
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return status, hdrs, body
        while True:  # delimited by the close
            try:
                self._fill()
            except Closed:
                break
        body = bytes(self.buf)
        self.close()
        return status, hdrs, body


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    """A client of RFC 6455, by hand: the opening handshake, masked frames."""

    def __init__(self, port, path="/ws", timeout=10.0):
        self.http = Http(port, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.http.connect()
        head = (f"GET {path} HTTP/1.1\r\nHost: torture\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.http.sock.sendall(head)
        status, hdrs, _ = self.http.read_response()
        expect = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if status != 101 or hdrs.get("sec-websocket-accept") != expect:
            self.http.close()
            raise Closed(f"websocket handshake: {status}, accept "
                         f"{hdrs.get('sec-websocket-accept')!r}")

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        # XOR with the mask, as one big integer (fast in CPython).
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
        self.http.sock.sendall(head + mask + masked)

    def recv(self):
        """(opcode, payload) of the next frame (the server's are unmasked)."""
        h = self.http
        while len(h.buf) < 2:
            h._fill()
        first, second = h.buf[0], h.buf[1]
        n, at = second & 0x7F, 2
        if n == 126:
            while len(h.buf) < 4:
                h._fill()
            n, at = struct.unpack("!H", h.buf[2:4])[0], 4
        elif n == 127:
            while len(h.buf) < 10:
                h._fill()
            n, at = struct.unpack("!Q", h.buf[2:10])[0], 10
        if second & 0x80:
            raise Closed("the server masked a frame")
        while len(h.buf) < at + n:
            h._fill()
        payload = bytes(h.buf[at:at + n])
        del h.buf[:at + n]
        return first & 0x0F, payload

    def close(self):
        try:
            self.send(0x8, struct.pack("!H", 1000))
            opcode, _ = self.recv()
            return opcode == 0x8
        except (OSError, Closed):
            return False
        finally:
            self.http.close()


# --------------------------------------------------------------------------------
# Many connections at once (selectors)

def response_status(buf):
    """The status of the first whole response in buf, or None while incomplete
    (Content-Length bodies; anything else counts as whole with its head)."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    head = bytes(buf[:i]).decode("latin-1")
    try:
        status = int(head.split(" ", 2)[1])
    except (IndexError, ValueError):
        return -1
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            if len(buf) < i + 4 + int(value.strip()):
                return None
    return status


def open_many(port, n, deadline, max_pending=512):
    """Opens n connections, non-blocking, at most max_pending handshakes at a time.
    Returns the list of sockets (None for one that failed or did not connect)."""
    sel = selectors.DefaultSelector()
    socks = [None] * n
    pending, started = 0, 0
    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and pending < max_pending:
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = s.connect_ex(("127.0.0.1", port))
            if err in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE, started)
                pending += 1
            else:
                s.close()
            started += 1
        for key, _ in sel.select(timeout=0.2):
            sel.unregister(key.fileobj)
            pending -= 1
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                socks[key.data] = key.fileobj
            else:
                key.fileobj.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return socks


def exchange(socks, payload, deadline, window=256):
    """Sends payload on every open socket and reads one response on each, with at most
    `window` requests outstanding (clients arriving, not one synchronized burst).
    Outcome per socket: ("ok", status) for a whole response (the socket stays open),
    ("closed", bytes) for an end before one, ("reset",) for a reset or refused send,
    ("timeout",) for nothing whole by the deadline, ("none",) for no socket."""
    sel = selectors.DefaultSelector()
    out = [("none",) if s is None else ("timeout",) for s in socks]
    todo = collections.deque(i for i, s in enumerate(socks) if s is not None)
    bufs = {}
    outstanding = 0
    while (todo or outstanding) and time.monotonic() < deadline:
        while todo and outstanding < window:
            i = todo.popleft()
            try:
                if socks[i].send(payload) != len(payload):
                    continue  # a full socket buffer for a tiny request: left as a timeout
            except BlockingIOError:
                continue
            except OSError:
                out[i] = ("reset",)
                continue
            bufs[i] = bytearray()
            sel.register(socks[i], selectors.EVENT_READ, i)
            outstanding += 1
        for key, _ in sel.select(timeout=0.2):
            i, s = key.data, key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data, out[i] = None, ("reset",)
            if data:
                bufs[i] += data
                status = response_status(bufs[i])
                if status is None:
                    continue
                out[i] = ("ok", status)
            elif data is not None:
                out[i] = ("closed", len(bufs[i]))
            sel.unregister(s)
            outstanding -= 1
    sel.close()
    return out


def drip(port, n, payload, pieces, give_up, ready=None):
    """n connections, each sending `payload` in pieces: `pieces` is a list of
    (seconds after its first byte, end offset); the first piece goes at connect.
    Each connection waits for the server to answer or close. Returns a dict:
    outcomes (Counter: status code, "closed", "reset", "hung"), cut (seconds from
    first byte to the answer or close, per connection that got one), sent bytes,
    and opened (connections that connected)."""
    sel = selectors.DefaultSelector()
    conns = []
    heap = []
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = pieces[0][1]
        s.sendall(payload[:end])
        first = time.monotonic()
        s.setblocking(False)
        c = {"s": s, "first": first, "pos": end, "piece": 1, "out": None, "end": None,
             "data": bytearray()}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        if len(pieces) > 1:
            heapq.heappush(heap, (first + pieces[1][0], len(conns) - 1))
    if ready is not None:
        ready.set()
    last_first = conns[-1]["first"] if conns else time.monotonic()
    deadline = last_first + give_up
    open_count = len(conns)
    sent = sum(c["pos"] for c in conns)

    def finish(c, outcome):
        nonlocal open_count
        if c["out"] is None:
            c["out"], c["end"] = outcome, time.monotonic()
        if c["s"] is not None:
            sel.unregister(c["s"])
            c["s"].close()
            c["s"] = None
            open_count -= 1

    while open_count and time.monotonic() < deadline:
        now = time.monotonic()
        wait = min(0.2, max(0.0, heap[0][0] - now)) if heap else 0.2
        for key, _ in sel.select(timeout=wait):
            c = key.data
            try:
                data = c["s"].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                finish(c, "reset")
                continue
            if not data:
                finish(c, "closed")
                continue
            c["data"] += data
            if c["out"] is None and b"\r\n" in c["data"]:
                try:
                    c["out"] = int(bytes(c["data"]).split(b" ", 2)[1])
                except (IndexError, ValueError):
                    c["out"] = "garbage"
                c["end"] = time.monotonic()
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, idx = heapq.heappop(heap)
            c = conns[idx]
            if c["s"] is None or c["out"] is not None:
                continue
            end = pieces[c["piece"]][1]
            try:
                k = c["s"].send(payload[c["pos"]:end])
            except BlockingIOError:
                k = 0
            except OSError:
                finish(c, "reset")
                continue
            c["pos"] += k
            sent += k
            if c["pos"] < end:  # the socket is full: try again soon
                heapq.heappush(heap, (now + 0.05, idx))
                continue
            c["piece"] += 1
            if c["piece"] < len(pieces):
                heapq.heappush(heap, (c["first"] + pieces[c["piece"]][0], idx))
    outcomes = collections.Counter()
    cut = []
    for c in conns:
        if c["out"] is None:
            outcomes["hung"] += 1
        else:
            outcomes[c["out"]] += 1
            cut.append(c["end"] - c["first"])
        if c["s"] is not None:
            c["s"].close()
    sel.close()
    return {"outcomes": outcomes, "cut": cut, "sent": sent, "opened": len(conns)}


def _drip_child(queue, args, ready):
    # A forked child must not run the parent's handlers (they stop every process).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        queue.put(drip(*args, ready=ready))
    except BaseException as e:  # reported by the parent
        queue.put({"error": repr(e)})


def paced_latency(port, seconds, period=0.002):
    """Sequential keep-alive GETs, one every `period`, for `seconds`: latencies (s)
    and a Counter of anything but a 200."""
    client = Http(port, timeout=5)
    lat, bad = [], collections.Counter()
    t0 = time.perf_counter()
    nxt = t0
    while True:
        now = time.perf_counter()
        if now - t0 >= seconds:
            break
        if now < nxt:
            time.sleep(nxt - now)
        nxt = max(nxt + period, time.perf_counter())
        t = time.perf_counter()
        try:
            status, _, _ = client.request("GET", "/")
            lat.append(time.perf_counter() - t)
            if status != 200:
                bad[status] += 1
        except (OSError, Closed) as e:
            bad[type(e).__name__] += 1
    client.close()
    return lat, bad


class Load:
    """Client threads hammering ringlb until stopped: GETs must all be 200; POSTs are
    counted by outcome."""

    def __init__(self, port, get_threads=3, post_threads=1, post_size=1024, paths=("/",)):
        self.port = port
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.get = collections.Counter()
        self.post = collections.Counter()
        self.examples = []
        self.post_body = bytes(random.getrandbits(8) for _ in range(post_size))
        self.paths = paths
        self.threads = [threading.Thread(target=self._run, args=(False,), daemon=True)
                        for _ in range(get_threads)]
        self.threads += [threading.Thread(target=self._run, args=(True,), daemon=True)
                         for _ in range(post_threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(15)

    def _run(self, post):
        client = Http(self.port, timeout=10)
        counter = self.post if post else self.get
        i = 0
        while not self.stop_event.is_set():
            i += 1
            try:
                if post:
                    status, _, body = client.request("POST", "/echo", self.post_body)
                    key = status if (status != 200 or body == self.post_body) else "200-bad-body"
                else:
                    status, _, _ = client.request("GET", self.paths[i % len(self.paths)])
                    key = status
            except (OSError, Closed) as e:
                key = type(e).__name__
            with self.lock:
                counter[key] += 1
                if key != 200 and len(self.examples) < 10:
                    self.examples.append(f"{'POST' if post else 'GET'}: {key} at "
                                         f"{time.strftime('%H:%M:%S')}")

    def totals(self):
        with self.lock:
            return collections.Counter(self.get), collections.Counter(self.post)


# --------------------------------------------------------------------------------
# Scenarios

class Result:
    def __init__(self, name, timing_counts=True):
        self.name = name
        # Whether a criterion on time (a latency, a deadline, a rate) can fail the
        # scenario. The short form run by CI only reports them: a shared, loaded CI
        # machine must not fail a build over a slow second.
        self.timing_counts = timing_counts
        self.checks = []
        self.figures = []
        self.error = None
        self.seconds = 0.0

    def check(self, ok, text):
        self.checks.append((bool(ok), text))
        return ok

    def timing(self, ok, text):
        """A criterion on time: a check in the full run, reported only in --short."""
        if self.timing_counts:
            return self.check(ok, text)
        self.checks.append((True, f"(timing, not a criterion in --short: {'met' if ok else 'NOT MET'}) {text}"))
        return ok

    def fig(self, text):
        self.figures.append(text)

    @property
    def passed(self):
        return self.error is None and bool(self.checks) and all(ok for ok, _ in self.checks)

    def block(self):
        lines = [f"== {self.name} == {'PASS' if self.passed else 'FAIL'} ({self.seconds:.1f} s)",
                 "  pass criteria:"]
        lines += [f"    [{'PASS' if ok else 'FAIL'}] {text}" for ok, text in self.checks]
        if self.error:
            lines.append(f"    [FAIL] the scenario raised: {self.error}")
        lines.append("  figures:")
        lines += [f"    {f}" for f in self.figures]
        return "\n".join(lines)


class Ctx:
    def __init__(self, args, work):
        self.bin = Path(args.bin).resolve()
        self.p = Params(args.short)
        self.work = work
        self.out = ROOT / "target" / "torture"
        self.stoppers = []

    def origin(self, name, port=None):
        o = Origin(self, name, port).start()
        self.stoppers.append(o.stop)
        return o

    def ringlb(self, tag, config_fn, nofile=None, port=None):
        """config_fn(port, admin_port) gives the file's text."""
        port = port or free_port()
        admin = free_port()
        r = Ringlb(self, tag, port, admin)
        self.stoppers.append(r.stop)
        return r.start(config_fn(port, admin), nofile=nofile)

    def cleanup(self):
        for fn in reversed(self.stoppers):
            try:
                fn()
            except Exception:
                pass
        self.stoppers = []


def web_config(admin, port, clusters, routes=None, extra_listeners=(), **kw):
    listeners = [{"name": "web", "address": f"127.0.0.1:{port}", "protocol": "http"},
                 *extra_listeners]
    routes = routes or [{"listener": "web", "cluster": clusters[0]["name"]}]
    return toml_config(admin, listeners, routes, clusters, **kw)


def alive_check(r, proxy, what="ringlb"):
    code = proxy.proc.poll()
    r.check(code is None, f"{what} still running at the end of the scenario"
            + ("" if code is None else f" (exited with {code})"))


def upstream_errors(stats):
    return stats["totals"]["upstream_errors"]


def error_diff(before, after):
    b, a = before["totals"]["errors"], after["totals"]["errors"]
    return {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}


TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT", 11: "CLOSING"}


def tcp_state(sock):
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return -1


TCP_HEX_STATES = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
                  "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0B": "CLOSING"}


def kernel_socket(local_port):
    """State and send queue of the loopback socket with this local port (/proc/net/tcp),
    orphans included: what the kernel still holds after a process closed it."""
    try:
        with open("/proc/net/tcp") as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == local_port:
                    tx = int(fields[4].split(":")[0], 16)
                    return (f"{TCP_HEX_STATES.get(fields[3], fields[3])}, {tx} bytes unsent, "
                            f"inode {fields[9]} ({'orphaned' if fields[9] == '0' else 'owned'})")
    except (OSError, IndexError, ValueError):
        pass
    return "gone"


def sc_never_read(ctx, r):
    p = ctx.p
    size = p(64, 8) * MiB
    timeout = 3.0
    margin = 2.0
    # The black hole: accepts, never reads. A small receive buffer (set before
    # listen, so accepted sockets inherit it) makes ringlb's writes stall soon.
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
    hole_port = free_port()
    hole.bind(("127.0.0.1", hole_port))
    hole.listen(64)
    hole.settimeout(0.2)
    held = []
    quit_hole = threading.Event()

    def hole_loop():
        while not quit_hole.is_set():
            try:
                held.append(hole.accept()[0])
            except OSError:
                pass

    hole_thread = threading.Thread(target=hole_loop, daemon=True)
    hole_thread.start()
    ctx.stoppers.append(lambda: (quit_hole.set(), hole_thread.join(2), hole.close(),
                                 [s.close() for s in held]))
    origin = ctx.origin("o1")

    def config(port, admin):
        return web_config(admin, port, [
            {"name": "blackhole", "health_check": {"kind": "none"},
             "timeouts": {"backend_response": f"{int(timeout)}s"},
             "backends": [{"name": "hole", "address": f"127.0.0.1:{hole_port}"}]},
            {"name": "origin", "health_check": {"kind": "http", "interval": "1s"},
             "backends": backends([origin])},
        ], routes=[{"listener": "web", "path_prefix": "/upload", "cluster": "blackhole"},
                   {"listener": "web", "cluster": "origin"}])

    proxy = ctx.ringlb("never-read", config)
    before = proxy.stats()
    fds_before = min(proxy.fds() for _ in range(5) if time.sleep(0.1) is None)

    # The upload: send while watching for an answer; never block on either.
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setblocking(False)
    head = f"POST /upload HTTP/1.1\r\nHost: torture\r\nContent-Length: {size}\r\n\r\n".encode()
    block = memoryview(b"x" * MiB)
    pending = memoryview(head)
    sent_body, got = 0, bytearray()
    outcome = None
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    t0 = time.monotonic()
    give_up = t0 + timeout + margin + 10  # well past the criterion: measure, do not hang
    last_send = t0
    while outcome is None and time.monotonic() < give_up:
        writing = len(pending) > 0 or sent_body < size
        sel.modify(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0))
        for _, mask in sel.select(timeout=0.2):
            if mask & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError as e:
                    outcome = f"reset ({errno.errorcode.get(e.errno, e.errno)})"
                    break
                if data == b"":
                    outcome = "closed" if not got else outcome
                    break
                if data:
                    got += data
                    status = response_status(got)
                    if status is not None:
                        outcome = status
                        break
            if mask & selectors.EVENT_WRITE:
                if not len(pending):
                    take = min(MiB, size - sent_body)
                    pending = block[:take]
                    sent_body += take
                try:
                    k = s.send(pending)
                    pending = pending[k:]
                    if k:
                        last_send = time.monotonic()
                except BlockingIOError:
                    pass
                except OSError as e:
                    outcome = f"reset on send ({errno.errorcode.get(e.errno, e.errno)})"
                    break
    elapsed = time.monotonic() - t0
    if outcome is None and got:
        outcome = "partial response"
    sel.close()
    s.close()
    body_sent = sent_body - len(pending)
    r.check(outcome in (502, 504) or (isinstance(outcome, str) and (
        outcome.startswith("reset") or outcome == "closed")),
        f"the upload ({size // MiB} MiB) to a backend that never reads ends in a 502/504 "
        f"or a close: {outcome}")
    r.timing(elapsed <= timeout + margin,
            f"... within backend_response ({timeout:.0f} s) + {margin:.0f} s: {elapsed:.2f} s")
    time.sleep(1.2)  # statistics reach the control thread every second
    after = proxy.stats()
    r.check(upstream_errors(after) > upstream_errors(before),
            f"the failure is counted in /stats upstream_errors: "
            f"{upstream_errors(before)} -> {upstream_errors(after)} {error_diff(before, after)}")
    # ringlb let go of the backend connection: its descriptor count is back where it
    # was before the upload (the least of a few samples: health checks come and go).
    fds_after = min(proxy.fds() for _ in range(5) if time.sleep(0.1) is None)
    r.check(fds_after <= fds_before,
            f"ringlb closed its connection to the black hole: fds {fds_before} before the "
            f"upload, {fds_after} after")
    t = after["totals"]
    r.check(t["active_connections"] == 0 and t["active_upstream_requests"] == 0,
            f"nothing left active: active_connections {t['active_connections']}, "
            f"active_upstream_requests {t['active_upstream_requests']}")
    r.fig(f"upload of {size // MiB} MiB: {body_sent / MiB:.2f} MiB of body sent before "
          f"the answer (the last accepted at {last_send - t0:.2f} s); outcome {outcome} after "
          f"{elapsed:.2f} s")
    r.fig(f"answer bytes: {bytes(got[:60])!r}")
    for c in held:
        try:
            peer_port = c.getpeername()[1]
        except OSError:
            continue
        r.fig(f"the black hole's side: {TCP_STATES.get(tcp_state(c), tcp_state(c))}; ringlb's "
              f"side: {kernel_socket(peer_port)}")

    # Garbage from a backend: a 502, twice (the second on a fresh upstream connection).
    before = proxy.stats()
    statuses = []
    client = Http(proxy.port)
    for _ in range(2):
        try:
            statuses.append(client.request("GET", "/bad/garbage")[0])
        except (OSError, Closed) as e:
            statuses.append(type(e).__name__)
    ok_after = client.request("GET", "/")[0]
    client.close()
    time.sleep(1.2)
    after = proxy.stats()
    inv = error_diff(before, after).get("invalid_response", 0)
    r.check(statuses == [502, 502] and inv == 2,
            f"/bad/garbage gives 502 (twice: {statuses}), counted as invalid_response (+{inv})")
    r.check(ok_after == 200, f"a normal request after that: {ok_after}")
    alive_check(r, proxy)


def cut_off(outcomes):
    """How many slow connections ringlb ended: a 408, or a close or reset."""
    return outcomes.get(408, 0) + outcomes.get("closed", 0) + outcomes.get("reset", 0)


def sc_slowloris(ctx, r):
    p = ctx.p
    n = p(1000, 200)
    header_read = p(10, 4)
    interval = 2.0
    period = 0.002
    origin = ctx.origin("o1")

    def config(port, admin):
        return web_config(admin, port, [{"name": "origin", "backends": backends([origin])}],
                          timeouts={"header_read": f"{header_read}s"})

    proxy = ctx.ringlb("slowloris", config)
    # Warm up, then the unloaded figure.
    paced_latency(proxy.port, 0.5, period)
    base_seconds = p(5, 3)
    base, base_bad = paced_latency(proxy.port, base_seconds, period)
    before = proxy.stats()

    prefix = b"GET / HTTP/1.1\r\nHost: slowloris\r\nX-Slow: " + b"a" * 200
    pieces = [(k * interval, k + 1) for k in range(int(header_read / interval) + 8)]
    give_up = header_read + 2 + 6
    mp = multiprocessing.get_context("fork")
    queue, ready = mp.Queue(), mp.Event()
    child = mp.Process(target=_drip_child, args=(queue, (proxy.port, n, prefix, pieces, give_up),
                                                 ready), daemon=True)
    child.start()
    ctx.stoppers.append(lambda: child.is_alive() and (child.terminate(), child.join(5)))
    if not ready.wait(30):
        raise RuntimeError("the slowloris connections did not open within 30 s")
    opened_at = time.monotonic()
    fds_loaded = proxy.fds()
    # Loaded: from the moment every slow connection is open until past their cut.
    loaded, loaded_bad = paced_latency(proxy.port, header_read + 1.5, period)
    try:
        res = queue.get(timeout=give_up + 20)
    except Exception:
        raise RuntimeError("the slowloris process gave no result")
    child.join(5)
    if "error" in res:
        raise RuntimeError(f"slowloris process: {res['error']}")
    time.sleep(1.2)
    after = proxy.stats()

    floor = 0.0005
    b50, b99 = pct(base, 0.5), pct(base, 0.99)
    l50, l99 = pct(loaded, 0.5), pct(loaded, 0.99)
    limit = 2 * max(b99, floor)
    r.check(not base_bad and not loaded_bad,
            f"the normal client got only 200s (unloaded: {dict(base_bad) or 'ok'}, "
            f"loaded: {dict(loaded_bad) or 'ok'})")
    r.timing(l99 <= limit,
            f"loaded p99 <= 2 x max(unloaded p99, 0.5 ms): {l99 * 1e3:.3f} ms <= "
            f"{limit * 1e3:.3f} ms")
    outcomes, cut = res["outcomes"], res["cut"]
    answered = cut_off(outcomes)
    r.check(res["opened"] == n and answered == n,
            f"every slow connection ({res['opened']} of {n} opened) answered 408 or closed: "
            f"{answered} ({dict(outcomes)})")
    late = sum(1 for c in cut if c > header_read + 2)
    early = sum(1 for c in cut if c < header_read - 0.5)
    r.timing(cut and late == 0 and early == 0,
            f"... at header_read ({header_read} s) from the first byte, none later than "
            f"+2 s ({late}) nor earlier than -0.5 s ({early})")
    hr = error_diff(before, after).get("header_read_timeout", 0)
    r.check(hr == n, f"/stats errors.header_read_timeout counts them: +{hr}")
    alive_check(r, proxy)
    r.fig(f"{n} slow connections, one byte every {interval:.0f} s, header_read {header_read} s; "
          f"ringlb fds while they were open: {fds_loaded}")
    r.fig(f"normal client, a keep-alive GET every {period * 1e3:.0f} ms:")
    r.fig(f"  unloaded ({base_seconds} s): {len(base)} requests, p50 {b50 * 1e3:.3f} ms, "
          f"p99 {b99 * 1e3:.3f} ms, max {max(base) * 1e3:.3f} ms")
    r.fig(f"  loaded ({header_read + 1.5:.1f} s): {len(loaded)} requests, p50 {l50 * 1e3:.3f} ms, "
          f"p99 {l99 * 1e3:.3f} ms, max {max(loaded) * 1e3:.3f} ms")
    if cut:
        r.fig(f"cut after (s from first byte): min {min(cut):.2f}, median {pct(cut, 0.5):.2f}, "
              f"max {max(cut):.2f}; bytes dripped {res['sent']}")


def sc_flood(ctx, r):
    p = ctx.p
    n = p(10000, 1000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if n + 2000 > soft:
        n = max(100, soft - 2000)
        r.fig(f"NOTE: RLIMIT_NOFILE {soft} allows a flood of only {n}")
    request = b"GET / HTTP/1.1\r\nHost: flood\r\n\r\n"
    o = [ctx.origin(f"o{i}") for i in (1, 2)]

    # 1. The flood, no limit: everyone answered, and a normal client too.
    def config(port, admin, **server):
        return web_config(admin, port, [{"name": "origin", "backends": backends(o)}],
                          server=server, timeouts={"idle": "5m", "header_read": "30s"})

    proxy = ctx.ringlb("flood", config)
    rss0 = proxy.rss_kib()
    t0 = time.monotonic()
    socks = open_many(proxy.port, n, t0 + 60)
    res = exchange(socks, request, time.monotonic() + 30)
    opened = time.monotonic() - t0
    ok = sum(1 for x in res if x == ("ok", 200))
    r.check(ok == n, f"{n} concurrent keep-alive clients, one GET each: {ok} answered 200 "
                     f"({dict(collections.Counter(x[0] if x[0] != 'ok' else x[1] for x in res))})")
    time.sleep(0.5)
    lat, bad = paced_latency(proxy.port, 2.0, 0.002)
    r.check(lat and not bad, f"a normal client, during the flood: {len(lat)} sequential GETs, "
                             f"failures {dict(bad) or 0}")
    res2 = exchange(socks, request, time.monotonic() + 30)
    ok2 = sum(1 for x in res2 if x == ("ok", 200))
    r.check(ok2 == n, f"every flood connection answers a second GET: {ok2}")
    rss = proxy.rss_kib()
    r.fig(f"flood of {n}: opened, then one GET each (at most 256 in flight), in {opened:.1f} s; "
          f"ringlb fds {proxy.fds()}, "
          f"RSS {rss0 / 1024:.1f} -> {rss / 1024:.1f} MiB "
          f"({(rss - rss0) * 1024 / n / 1024:.1f} KiB per connection)")
    r.fig(f"normal client during the flood: p50 {pct(lat, 0.5) * 1e3:.3f} ms, "
          f"p99 {pct(lat, 0.99) * 1e3:.3f} ms")
    r.fig(f"script RLIMIT_NOFILE: soft {soft}, hard {hard} (raised to the hard limit at start)")
    for s in socks:
        if s:
            s.close()
    alive_check(r, proxy)
    proxy.stop()

    # 2. max_connections = the flood size: extra connections are refused (closed
    # unanswered) while the open ones still answer. One shard, because the limit is
    # enforced per shard (README) and the kernel's SO_REUSEPORT spread is uneven.
    extra = max(20, n // 10)
    proxy = ctx.ringlb("flood-max", lambda port, admin: config(port, admin, shards=1,
                                                                  max_connections=n))
    socks = open_many(proxy.port, n, time.monotonic() + 60)
    res = exchange(socks, request, time.monotonic() + 30)
    ok = sum(1 for x in res if x == ("ok", 200))
    more = open_many(proxy.port, extra, time.monotonic() + 30)
    res_more = exchange(more, request, time.monotonic() + 10)
    refused = sum(1 for x in res_more if x in (("closed", 0), ("reset",)))
    res2 = exchange(socks, request, time.monotonic() + 30)
    ok2 = sum(1 for x in res2 if x == ("ok", 200))
    time.sleep(1.2)
    st = proxy.stats()["totals"]
    r.check(ok == n, f"max_connections = {n} (1 shard): the first {n} answered: {ok}")
    r.check(refused == extra, f"{extra} more connections closed without a response: {refused} "
                              f"({dict(collections.Counter(str(x) for x in res_more))})")
    r.check(st["connections_refused"] == extra,
            f"counted in /stats connections_refused: {st['connections_refused']}")
    r.check(ok2 == n, f"the {n} open connections still answer a second GET: {ok2}")
    for s in socks + more:
        if s:
            s.close()
    alive_check(r, proxy)
    proxy.stop()

    # 3. Out of descriptors: ringlb with RLIMIT_NOFILE 1024 and more clients than that,
    # first idle ones (they send nothing, so ringlb holds every one it accepts until
    # header_read), then clients that each send a GET.
    emfile_phase(ctx, r, o, config, requests=False)
    emfile_phase(ctx, r, o, config, requests=True)


def emfile_phase(ctx, r, origins, config, requests):
    p = ctx.p
    limit = 1024
    flood = limit + p(2000, 600)
    recover_within = 10.0
    keep_trying = p(40, 15)  # past recover_within, to report how long recovery took
    tag = "GET clients" if requests else "idle clients"
    needle = "Too many open files"
    proxy = ctx.ringlb("flood-emfile-" + ("get" if requests else "idle"),
                       lambda port, admin: config(port, admin, max_connections=100000),
                       nofile=limit)
    ticks0 = proxy.cpu_ticks()
    socks = open_many(proxy.port, flood, time.monotonic() + 60)
    opened = sum(1 for s in socks if s)
    counts = collections.Counter()
    if requests:
        res = exchange(socks, b"GET / HTTP/1.1\r\nHost: flood\r\n\r\n", time.monotonic() + 5)
        counts = collections.Counter(x[1] if x[0] == "ok" else x[0] for x in res)
    else:
        deadline = time.monotonic() + 10
        while proxy.fds() < limit - 16 and time.monotonic() < deadline:
            time.sleep(0.1)
    time.sleep(0.5)
    fds_at = proxy.fds()
    logs0 = proxy.count_log(needle)
    c0, w0 = proxy.cpu_ticks(), time.monotonic()
    time.sleep(5)
    c1, w1 = proxy.cpu_ticks(), time.monotonic()
    logs1 = proxy.count_log(needle)
    fds_end = proxy.fds()
    cpu = (c1 - c0) / CLK_TCK / (w1 - w0)
    try:
        accept_errors = proxy.metric("ringlb_accept_errors_total")
    except OSError as e:
        accept_errors = f"admin unreachable ({e})"
    try:
        states = {b["name"]: f"healthy={b['healthy']} breaker={b['breaker']}"
                  for b in json.loads(proxy.admin("/backends")[1])}
        errors = {k: v for k, v in proxy.stats()["totals"]["errors"].items() if v}
    except (OSError, ValueError) as e:
        states = errors = f"admin unreachable ({e})"
    in_window = logs1 - logs0
    if not requests:
        r.check(fds_at >= limit - 16 and fds_end >= limit - 16,
                f"EMFILE, {tag}: ringlb held its descriptor limit through the window: "
                f"{fds_at} and {fds_end} fds of {limit}, {opened} clients connected")
        r.check(cpu < 0.10, f"EMFILE, {tag}: CPU while over the limit < 10% of a core: "
                            f"{cpu * 100:.1f}% over {w1 - w0:.1f} s")
        r.check(in_window <= 25, f"EMFILE, {tag}: '{needle}' log lines in those 5 s <= 25 "
                                 f"(a handful, not a flood): {in_window}")
    for s in socks:
        if s:
            s.close()
    t_close = time.monotonic()
    recovered, last = None, None
    while time.monotonic() - t_close < keep_trying:
        try:
            last = Http(proxy.port, timeout=2).request("GET", "/", close=True)[0]
            if last == 200:
                recovered = time.monotonic() - t_close
                break
        except (OSError, Closed) as e:
            last = type(e).__name__
        time.sleep(0.2)
    r.timing(recovered is not None and recovered <= recover_within,
            f"EMFILE, {tag}: recovery, a normal request gets a 200 within "
            f"{recover_within:.0f} s of the flood closing: "
            + (f"after {recovered:.2f} s" if recovered is not None
               else f"not in {keep_trying} s ({last})"))
    alive_check(r, proxy)
    ticks = proxy.cpu_ticks() - ticks0
    r.fig(f"EMFILE, {tag}: ringlb RLIMIT_NOFILE {limit}, {flood} clients ({opened} connected)"
          + (f", answers within 5 s: {dict(counts)}" if requests else ""))
    r.fig(f"  fds {fds_at} -> {fds_end} in the window; CPU {cpu * 100:.1f}% of a core there, "
          f"{ticks / CLK_TCK:.2f} s CPU in the whole phase")
    r.fig(f"  '{needle}' log lines: {logs0} before the window, +{in_window} in it, "
          f"{proxy.count_log(needle)} in all; ringlb_accept_errors_total "
          f"{'absent' if accept_errors is None else accept_errors}")
    r.fig(f"  backends while over the limit: {states}; /stats errors {errors}")
    r.fig("  recovery: " + (f"{recovered:.2f} s" if recovered is not None
                            else f"none in {keep_trying} s"))
    for line in [x for x in proxy.log_lines() if "WARN" in x or "ERROR" in x][:6]:
        r.fig(f"  log: {line[:160]}")
    proxy.stop()


def sc_slow_heads(ctx, r):
    p = ctx.p
    n = p(5000, 500)
    header_read = p(10, 6)
    max_header = 16384
    # Fixed costs that do not grow with N. 64 MiB over 500 connections (--short) would
    # hide 130 KiB per connection, so the short run allows 8 MiB.
    const = p(64, 8) * MiB
    # What a connection reading a head holds besides the head: its first 4 KiB
    # buffer (freed when the head outgrows it, resident until mimalloc purges),
    # the 1 KiB of read room past max_header_bytes, two 1 KiB scratch buffers, and
    # its task. Measured at about 13 KiB; the bound allows 16.
    per_connection = 16 * KiB
    origin = ctx.origin("o1")

    def config(port, admin):
        return web_config(admin, port, [{"name": "origin", "backends": backends([origin])}],
                          timeouts={"header_read": f"{header_read}s"},
                          limits={"max_header_bytes": max_header})

    proxy = ctx.ringlb("slow-heads", config)
    warm = Http(proxy.port)
    for _ in range(50):
        warm.request("GET", "/")
    warm.close()
    time.sleep(1.5)
    base = proxy.rss_kib()
    head_len = max_header - 256
    payload = b"GET / HTTP/1.1\r\nHost: slow\r\n"
    while len(payload) < head_len - 40:
        payload += b"X-Pad-%04d: " % (len(payload) % 10000) + b"p" * 200 + b"\r\n"
    payload = payload[:head_len]
    k = 8
    spread = header_read - 2.5
    pieces = [(spread * i / (k - 1), head_len * (i + 1) // k) for i in range(k)]
    peak = {"rss": base, "at": 0.0}
    stop_sampler = threading.Event()
    t0 = time.monotonic()

    def sampler():
        while not stop_sampler.wait(0.1):
            rss = proxy.rss_kib()
            if rss > peak["rss"]:
                peak["rss"], peak["at"] = rss, time.monotonic() - t0

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    res = drip(proxy.port, n, payload, pieces, give_up=header_read + 2 + 6)
    stop_sampler.set()
    th.join(2)
    time.sleep(2.5)
    after = proxy.rss_kib()
    growth = (peak["rss"] - base) * KiB
    bound = n * (max_header + per_connection) + const
    r.check(growth <= bound,
            f"peak RSS growth <= N x (max_header_bytes + {per_connection // KiB} KiB) + "
            f"{const // MiB} MiB: {growth / MiB:.1f} MiB <= {bound / MiB:.1f} MiB")
    outcomes, cut = res["outcomes"], res["cut"]
    answered = cut_off(outcomes)
    r.check(res["opened"] == n and answered == n,
            f"all {n} cut ({res['opened']} opened): {answered} ({dict(outcomes)})")
    late = sum(1 for c in cut if c > header_read + 2)
    r.timing(cut and late == 0, f"... within header_read ({header_read} s) + 2 s of the first "
                               f"byte: {late} later")
    alive_check(r, proxy)
    r.fig(f"{n} connections x {head_len} bytes of head in {k} pieces over {spread:.1f} s, "
          f"header_read {header_read} s; {res['sent'] / MiB:.1f} MiB sent")
    r.fig(f"RSS: baseline {base / 1024:.1f} MiB, peak {peak['rss'] / 1024:.1f} MiB at "
          f"{peak['at']:.1f} s, {after / 1024:.1f} MiB 2.5 s after the cut")
    r.fig(f"growth per connection: {growth / n / KiB:.1f} KiB "
          f"(head {head_len / KiB:.1f} KiB)")
    if cut:
        r.fig(f"cut after (s): min {min(cut):.2f}, median {pct(cut, 0.5):.2f}, max {max(cut):.2f}")


def sc_backend_churn(ctx, r):
    p = ctx.p
    seconds = p(60, 20)
    every, down = 3.0, 1.0
    origins = [ctx.origin(f"o{i}") for i in (1, 2, 3)]

    def config(port, admin):
        return web_config(admin, port, [{
            "name": "origin",
            "health_check": {"kind": "http", "interval": "250ms", "timeout": "250ms",
                             "unhealthy_threshold": 2, "healthy_threshold": 2},
            "circuit_breaker": {"failure_threshold": 3, "open_for": "1s"},
            "retry": {"max_retries": 2},
            "backends": backends(origins)}])

    proxy = ctx.ringlb("churn", config)
    before = proxy.stats()
    load = Load(proxy.port, get_threads=3, post_threads=1).start()
    t0 = time.monotonic()
    kills = 0
    while time.monotonic() - t0 < seconds:
        victim = origins[kills % 3]
        cycle = time.monotonic()
        victim.kill()
        kills += 1
        time.sleep(down)
        victim.start()
        time.sleep(max(0.0, every - (time.monotonic() - cycle)))
    load.stop()
    elapsed = time.monotonic() - t0
    time.sleep(1.2)
    after = proxy.stats()
    gets, posts = load.totals()
    n_get, n_post = sum(gets.values()), sum(posts.values())
    get_fail = n_get - gets.get(200, 0)
    post_bad = n_post - posts.get(200, 0) - posts.get(502, 0)
    r.check(n_get >= 50 * seconds, f"the load ran: {n_get} GETs, {n_post} POSTs in "
                                   f"{elapsed:.0f} s ({n_get / elapsed:.0f} GET/s)")
    r.check(get_fail == 0, f"no GET failed: {get_fail} ({dict(gets)})")
    r.check(post_bad == 0, f"a POST failed only as a 502: other outcomes {post_bad} "
                           f"({dict(posts)})")
    alive_check(r, proxy)
    t = after["totals"]
    r.fig(f"{kills} SIGKILLs over {elapsed:.0f} s (one of 3 origins every {every:.0f} s, "
          f"down {down:.0f} s each, restarted on its port)")
    r.fig(f"GET statuses {dict(gets)}; POST statuses {dict(posts)} (a POST is never resent "
          f"by ringlb, per README; the origin cannot show it)")
    r.fig(f"/stats: retries {t['retries'] - before['totals']['retries']}, retries over budget "
          f"{t['retries_over_budget']}, errors {error_diff(before, after)}")
    for line in load.examples[:5]:
        r.fig(f"  e.g. {line}")


def sc_reload_storm(ctx, r):
    p = ctx.p
    hups = p(100, 20)
    seconds = p(10, 4)
    tolerance = 2
    origins = [ctx.origin(f"o{i}") for i in (1, 2, 3)]

    def config_for(variant):
        def config(port, admin):
            if variant == 0:
                bes = backends(origins)
                strategy = "round-robin"
            else:
                bes = [dict(backends(origins[:1])[0], weight=5), *backends(origins[1:2])]
                strategy = "weighted-round-robin"
            return web_config(admin, port, [{
                "name": "origin", "strategy": strategy,
                "health_check": {"kind": "http", "interval": "200ms", "timeout": "200ms"},
                "upstream": {"idle_timeout": "1s"},
                "backends": bes}], level="info")
        return config

    proxy = ctx.ringlb("reload", config_for(0))
    texts = [config_for(v)(proxy.port, proxy.admin_port) for v in (0, 1)]

    def settled(wait_s):
        """Descriptors not holding a pooled upstream connection: fds (the least of 10
        samples over 1 s, as health checks open sockets now and then) minus the
        pooled_idle_connections gauge (which drops to 0 once upstream.idle_timeout,
        1 s here, has passed with no traffic: each shard expires them once a second)."""
        time.sleep(wait_s)
        fds = min(proxy.fds() for _ in range(10) if time.sleep(0.1) is None)
        pooled = proxy.stats()["totals"]["pooled_idle_connections"]
        return fds - pooled, fds, pooled

    warm = Load(proxy.port, get_threads=3, post_threads=1).start()
    time.sleep(1)
    warm.stop()
    own_before, fds_before, pooled_before = settled(2.5)
    before = proxy.stats()
    load = Load(proxy.port, get_threads=3, post_threads=1).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    for i in range(hups):
        proxy.write_config(texts[(i + 1) % 2])
        os.kill(proxy.pid, signal.SIGHUP)
        time.sleep(max(0.0, t0 + (i + 1) * seconds / hups - time.monotonic()))
    storm = time.monotonic() - t0
    time.sleep(0.5)
    load.stop()
    fds_load_end = proxy.fds()
    own_after, fds_after, pooled_after = settled(2.5)
    after = proxy.stats()
    gets, posts = load.totals()
    n = sum(gets.values()) + sum(posts.values())
    failed = n - gets.get(200, 0) - posts.get(200, 0)
    reloaded = proxy.count_log("configuration reloaded")
    refused = [line for line in proxy.log_lines() if " ERROR " in line or "refused" in line]
    r.check(n >= 100, f"the load ran: {n} requests")
    r.check(failed == 0, f"zero failed requests during {hups} SIGHUPs in {storm:.1f} s: {failed} "
                         f"(GET {dict(gets)}, POST {dict(posts)})")
    r.check(abs(own_after - own_before) <= tolerance,
            f"open fds but pooled upstream connections, before and after (load stopped, "
            f"2.5 s later) within +-{tolerance}: {own_before} -> {own_after}")
    r.check(pooled_after == 0,
            f"pooled upstream connections expired 2.5 s after the load (idle_timeout 1 s): "
            f"{pooled_after} left")
    r.check(not refused, f"no reload refused or errored in the log: {len(refused)}")
    alive_check(r, proxy)
    r.fig(f"{hups} SIGHUPs in {storm:.1f} s alternating 3 backends round-robin / 2 backends "
          f"weighted 5:1; 'configuration reloaded' logged {reloaded} times"
          + (" (the kernel merges a SIGHUP that arrives while one is pending)"
             if reloaded < hups else ""))
    r.fig(f"fds: {fds_before} before ({pooled_before} pooled), {fds_load_end} as the load "
          f"stopped, {fds_after} after ({pooled_after} pooled)")
    r.fig(f"/stats errors during the storm: {error_diff(before, after) or 'none'}")
    for line in (refused + load.examples)[:5]:
        r.fig(f"  e.g. {line[:150]}")


def sc_soak(ctx, r):
    p = ctx.p
    seconds = p(600, 60)
    sample_every = 5.0
    origins = [ctx.origin(f"o{i}") for i in (1, 2, 3)]
    tcp_port = free_port()

    def config(port, admin):
        return web_config(
            admin, port,
            [{"name": "origin", "health_check": {"kind": "http", "interval": "1s"},
              "backends": backends(origins)},
             {"name": "tcp-origin", "health_check": {"kind": "tcp", "interval": "1s"},
              "backends": [{"name": f"t{o.name}", "address": f"127.0.0.1:{o.port}"}
                           for o in origins]}],
            extra_listeners=[{"name": "tcp", "address": f"127.0.0.1:{tcp_port}",
                              "protocol": "tcp", "cluster": "tcp-origin"}])

    proxy = ctx.ringlb("soak", config)
    wait_port(tcp_port, proc=proxy.proc)
    stop_event = threading.Event()
    lock = threading.Lock()
    counts = collections.Counter()      # kind -> requests done
    unexpected = collections.Counter()  # kind: what -> count
    examples = []
    big = bytes(random.getrandbits(8) for _ in range(4096)) * 256  # 1 MiB
    pattern = bytes(ord("a") + i % 26 for i in range(MiB))

    def note(kind, ok, what=""):
        with lock:
            counts[kind] += 1
            if not ok:
                unexpected[f"{kind}: {what}"] += 1
                if len(examples) < 10:
                    examples.append(f"{time.strftime('%H:%M:%S')} {kind}: {what}")

    def paced(rate, body):
        """Runs body() `rate` times a second until stopped."""
        t0 = time.perf_counter()
        i = 0
        while not stop_event.is_set():
            i += 1
            due = t0 + i / rate
            now = time.perf_counter()
            if due > now:
                stop_event.wait(due - now)
                if stop_event.is_set():
                    break
            elif now - due > 1.0:  # far behind: skip, do not burst
                t0, i = now, 0
            body()

    def keep_alive():
        c = Http(proxy.port)
        n = [0]

        def one():
            n[0] += 1
            path, want = "/", 200
            if n[0] % 20 == 0:
                path, want = "/status/500", 500
            elif n[0] % 20 == 10:
                path, want = "/status/404", 404
            try:
                status = c.request("GET", path)[0]
                note("keep-alive", status == want, status)
            except (OSError, Closed) as e:
                note("keep-alive", False, type(e).__name__)
        return one

    def new_conn():
        try:
            c = Http(proxy.port)
            status = c.request("GET", "/", close=True)[0]
            note("new-connection", status == 200, status)
        except (OSError, Closed) as e:
            note("new-connection", False, type(e).__name__)

    def large():
        c = Http(proxy.port, timeout=20)
        n = [0]

        def one():
            n[0] += 1
            try:
                if n[0] % 2:
                    status, _, body = c.request("GET", f"/bytes/{MiB}")
                    note("large", status == 200 and body == pattern, f"GET {status} {len(body)}")
                else:
                    status, _, body = c.request("POST", "/echo", big)
                    note("large", status == 200 and body == big, f"POST {status} {len(body)}")
            except (OSError, Closed) as e:
                note("large", False, type(e).__name__)
        return one

    def websocket():
        state = {"ws": None, "n": 0}

        def one():
            try:
                if state["ws"] is None:
                    state["ws"] = WebSocket(proxy.port)
                state["n"] += 1
                size = random.choice((5, 120, 1000, 4000, 70000))
                msg = os.urandom(size)
                opcode = 0x2
                state["ws"].send(opcode, msg)
                got_op, got = state["ws"].recv()
                note("websocket", got_op == opcode and got == msg, f"op {got_op} len {len(got)}")
                if state["n"] % 100 == 0:  # a fresh tunnel now and then
                    closed = state["ws"].close()
                    state["ws"] = None
                    if not closed:
                        note("websocket", False, "no close frame back")
            except (OSError, Closed) as e:
                note("websocket", False, f"{type(e).__name__} {e}")
                if state["ws"]:
                    state["ws"].http.close()
                state["ws"] = None
        return one

    def tcp_tunnel():
        try:
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as s:
                s.sendall(b"GET /bytes/1024 HTTP/1.1\r\nHost: tunnel\r\nConnection: close\r\n\r\n")
                data = bytearray()
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            ok = data.startswith(b"HTTP/1.1 200") and data.endswith(pattern[:1024])
            note("tcp-tunnel", ok, bytes(data[:30]))
        except OSError as e:
            note("tcp-tunnel", False, type(e).__name__)

    # (name, rate per second, body) - 500 requests/s in all.
    plan = [("keep-alive", 150, keep_alive()), ("keep-alive", 150, keep_alive()),
            ("new-connection", 100, new_conn), ("large", 10, large()),
            ("websocket", 50, websocket()), ("tcp-tunnel", 40, tcp_tunnel)]
    rate = sum(x[1] for x in plan)
    threads = [threading.Thread(target=paced, args=(rt, fn), daemon=True) for _, rt, fn in plan]
    samples = []
    t0 = time.monotonic()
    for t in threads:
        t.start()
    next_sample = t0
    while True:
        now = time.monotonic()
        if now >= next_sample:
            with lock:
                done = sum(counts.values())
            samples.append((now - t0, proxy.rss_kib(), proxy.fds(), done))
            next_sample += sample_every
        if now - t0 >= seconds:
            break
        time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
    stop_event.set()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    stats = proxy.stats()
    total = sum(counts.values())

    warm = [s for s in samples if s[0] >= 0.2 * seconds]
    rss_min = min(s[1] for s in warm)
    rss_end = max(s[1] for s in samples[-3:])
    rss_limit = rss_min * 1.10 + 4 * 1024
    fifth = max(1, len(warm) // 5)
    fd_first = max(s[2] for s in warm[:fifth])
    fd_last = max(s[2] for s in warm[-fifth:])
    r.check(not unexpected, f"zero unexpected errors: {sum(unexpected.values())} "
                            f"{dict(unexpected) if unexpected else ''}")
    r.timing(total >= 0.9 * rate * elapsed,
            f"the offered rate held: {total / elapsed:.0f} of {rate} req/s")
    r.check(rss_end <= rss_limit,
            f"RSS after warm-up (first 20%) grows < 10% + 4 MiB: end (max of the last 3 "
            f"samples) {rss_end / 1024:.1f} MiB <= {rss_limit / 1024:.1f} MiB (min "
            f"{rss_min / 1024:.1f} MiB)")
    r.check(fd_last <= fd_first + 10,
            f"fd count flat: max of the last fifth {fd_last} <= max of the first fifth after "
            f"warm-up {fd_first} + 10")
    alive_check(r, proxy)
    r.fig(f"{elapsed:.0f} s at {rate} req/s offered: {dict(counts)}")
    t = stats["totals"]
    r.fig(f"/stats: requests {t['requests']}, responses {t['responses']}, tunnels "
          f"opened {stats['tunnels']['opened']} (upgraded {stats['tunnels']['upgraded']}), "
          f"errors {{{', '.join(f'{k}: {v}' for k, v in t['errors'].items() if v)}}}")
    r.fig(f"latency since start: {stats['latency']['since_start']}")
    step = max(1, len(samples) // 20)
    r.fig("   t (s)   RSS (MiB)   fds   requests")
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        r.fig(f"  {s[0]:6.0f}   {s[1] / 1024:9.1f}   {s[2]:4d}   {s[3]:8d}")
    for line in examples[:5]:
        r.fig(f"  e.g. {line}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    svg = ctx.out / f"soak-{ctx.p.mode}.svg"
    svg.write_text(soak_svg(samples, seconds, ctx.p.mode))
    (ctx.out / f"soak-{ctx.p.mode}.json").write_text(json.dumps(
        [{"t": s[0], "rss_kib": s[1], "fds": s[2], "requests": s[3]} for s in samples]))
    r.fig(f"plot: {svg.relative_to(ROOT) if svg.is_relative_to(ROOT) else svg}")


def soak_svg(samples, seconds, mode):
    """Two panels, RSS and fds over time, as plain SVG."""
    w, h, left, top, ph, gap = 720, 420, 70, 30, 150, 50

    def panel(y0, values, label, unit, color):
        lo, hi = 0, max(values) * 1.15 or 1
        xs = [left + (s[0] / seconds) * (w - left - 20) for s in samples]
        ys = [y0 + ph - (v - lo) / (hi - lo) * ph for v in values]
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        out = []
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            y = y0 + ph - ph * k / 4
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                       f'text-anchor="end">{v:.1f}</text>')
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - 20}" y2="{y:.1f}" '
                       f'stroke="#eee"/>')
        warm_x = left + 0.2 * (w - left - 20)
        out.append(f'<line x1="{warm_x:.1f}" y1="{y0}" x2="{warm_x:.1f}" y2="{y0 + ph}" '
                   f'stroke="#c66" stroke-dasharray="4 3"/>')
        out += [f'<rect x="{left}" y="{y0}" width="{w - left - 20}" height="{ph}" '
                f'fill="none" stroke="#999"/>',
                f'<text x="{left}" y="{y0 - 8}" font-size="13">{label} ({unit})</text>',
                f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>']
        return out

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif">', f'<rect width="{w}" height="{h}" fill="white"/>']
    parts += panel(top, [s[1] / 1024 for s in samples], f"ringlb RSS, soak ({mode})", "MiB",
                   "#1f77b4")
    parts += panel(top + ph + gap, [s[2] for s in samples], "ringlb open fds", "count",
                   "#2ca02c")
    for k in range(6):
        x = left + k / 5 * (w - left - 20)
        parts.append(f'<text x="{x:.1f}" y="{h - 12}" font-size="11" text-anchor="middle">'
                     f'{seconds * k / 5:.0f} s</text>')
    parts.append(f'<text x="{w - 20}" y="{top - 8}" font-size="11" text-anchor="end" '
                 f'fill="#c66">dashed: end of warm-up</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


RUNNERS = {
    "never-read": sc_never_read,
    "slowloris": sc_slowloris,
    "flood": sc_flood,
    "slow-heads-memory": sc_slow_heads,
    "backend-churn": sc_backend_churn,
    "reload-storm": sc_reload_storm,
    "soak": sc_soak,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="the CI sizes (under ~3 minutes)")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="NAME",
                    help=f"run only these: {', '.join(SCENARIOS)}")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "ringlb"),
                    help="the ringlb binary (default target/release/ringlb; not built here)")
    args = ap.parse_args()
    if not Path(args.bin).is_file():
        sys.exit(f"{args.bin}: no such binary (cargo build --release first)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    p = Params(args.short)
    # A watchdog: whatever happens, the run ends (children killed) past its budget.
    budget = p(45 * 60, 8 * 60)

    def watchdog():
        time.sleep(budget)
        print(f"\ntorture: watchdog: over {budget} s, stopping", flush=True)
        stop_all()
        os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()

    def on_signal(signum, _frame):
        stop_all()
        os._exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    names = args.only or SCENARIOS
    print(f"torture ({p.mode}): {len(names)} scenario(s), ringlb {args.bin}; "
          f"RLIMIT_NOFILE raised from {soft} to the hard limit {hard}; {os.cpu_count()} CPUs",
          flush=True)
    results = []
    t_all = time.monotonic()
    out = ROOT / "target" / "torture"
    work = out / f"run-{p.mode}"  # configurations and ringlb logs, kept for a look after
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in names:
        ctx = Ctx(args, work)
        r = Result(name, timing_counts=not args.short)
        print(f"\n-- {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            RUNNERS[name](ctx, r)
        except Exception as e:
            r.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            ctx.cleanup()
        r.seconds = time.monotonic() - t0
        results.append(r)
        print(r.block(), flush=True)
    total = time.monotonic() - t_all
    print(f"\n{'scenario':<20} {'result':<7} {'time':>8}")
    for r in results:
        print(f"{r.name:<20} {'PASS' if r.passed else 'FAIL':<7} {r.seconds:7.1f}s")
    failed = [r.name for r in results if not r.passed]
    print(f"{'total':<20} {'FAIL' if failed else 'PASS':<7} {total:7.1f}s")
    (out / f"torture-{p.mode}.json").write_text(json.dumps({
        "mode": p.mode, "seconds": total, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "scenarios": [{"name": r.name, "passed": r.passed, "seconds": r.seconds,
                       "checks": r.checks, "figures": r.figures, "error": r.error}
                      for r in results]}, indent=1))
    stop_all()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
