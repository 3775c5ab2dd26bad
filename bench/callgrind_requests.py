#!/usr/bin/env python3
"""User-space instructions per proxied request, for builds side by side.

Instruction counts do not depend on what else the machine does, so they resolve a
change of a few percent that the side-by-side CPU figures (bench/compare.py) cannot
on a noisy VM. Each build runs under `valgrind --tool=callgrind` with the epoll
driver and one shard on a short-form configuration, in front of one
`ringlb origin`; one keep-alive client sends `GET /` N1 and then N2 times (two
runs), and (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up and shutdown. The
shard's periodic work (command polling, reports) grows with the run's length and
is counted too. Loopback only; every step is bounded.

    python3 bench/callgrind_requests.py BEFORE_BIN AFTER_BIN [N1 N2]
"""

import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORIGIN_PORT = 19301


def instructions(binary, n, port, work):
    config = work / f"ringlb-{port}.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nshards = 1\nio = "epoll"\n'
        f'[admin]\nlisten = "127.0.0.1:{port + 1}"\n[logging]\nlevel = "warn"\n'
        f'[health_check]\nkind = "none"\n'
        f'[[backends]]\nname = "o1"\naddress = "127.0.0.1:{ORIGIN_PORT}"\n'
    )
    out = work / f"callgrind-{port}.out"
    proxy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "run",
         "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            client = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            if time.time() > deadline:
                proxy.kill()
                sys.exit(f"{binary} did not start")
            time.sleep(0.1)
    client.settimeout(30)
    pending = b""
    for _ in range(n):
        client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        while True:
            end = pending.find(b"\r\n\r\n")
            # The origin answers its name, "o1\n", with a Content-Length.
            if end >= 0 and len(pending) >= end + 4 + 3:
                pending = pending[end + 4 + 3:]
                break
            chunk = client.recv(65536)
            if not chunk:
                sys.exit("the proxy closed the connection")
            pending += chunk
    client.close()
    proxy.send_signal(signal.SIGTERM)
    proxy.wait(timeout=120)
    return int(re.search(r"^summary:\s+(\d+)", out.read_text(), re.M).group(1))


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    builds = {"before": sys.argv[1], "after": sys.argv[2]}
    n1, n2 = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) == 5 else (2000, 12000)
    origin_bin = builds["after"]
    origin = subprocess.Popen(
        [origin_bin, "origin", "--listen", f"127.0.0.1:{ORIGIN_PORT}", "--name", "o1",
         "--io", "epoll"], stderr=subprocess.DEVNULL)
    port = 19500
    try:
        with tempfile.TemporaryDirectory() as work:
            for name, binary in builds.items():
                counts = []
                for n in (n1, n2):
                    port += 2
                    counts.append(instructions(binary, n, port, Path(work)))
                    print(f"{name} {n} {counts[-1]}", flush=True)
                print(f"{name} instructions per request: {(counts[1] - counts[0]) / (n2 - n1):.1f}")
    finally:
        origin.terminate()


if __name__ == "__main__":
    main()
