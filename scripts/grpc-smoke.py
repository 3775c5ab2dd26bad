#!/usr/bin/python3
"""gRPC calls through ringlb with a real gRPC client (Debian's python3-grpcio,
the C core), to the echo service of `ringlb origin --h2c`.

Usage: grpc-smoke.py HOST:PORT

Messages are raw bytes (no protobuf code): grpcio passes bytes through when no
serializer is given. Prints one line per call and exits non-zero on the first
failure. tests/upstream_h2.rs runs it when grpcio is installed (CI installs it).
"""

import queue
import sys

import grpc

TIMEOUT = 20


def main(target):
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)

    unary = channel.unary_unary("/ringlb.test.Echo/Unary")
    assert unary(b"hello", timeout=TIMEOUT) == b"hello"
    print("unary ok")

    stream = channel.unary_stream("/ringlb.test.Echo/ServerStream")
    got = list(stream(b"200:4096", timeout=TIMEOUT))
    assert len(got) == 200 and all(len(m) == 4096 for m in got), len(got)
    print("server streaming ok")

    collect = channel.stream_unary("/ringlb.test.Echo/ClientStream")
    assert collect(iter([b"x" * 1000] * 50), timeout=TIMEOUT) == b"50:50000"
    print("client streaming ok")

    # Each message is sent only once the echo of the one before came back.
    bidi = channel.stream_stream("/ringlb.test.Echo/Bidi")
    turns = queue.Queue()
    turns.put(b"turn 0")

    def requests():
        for _ in range(5):
            message = turns.get(timeout=TIMEOUT)
            if message is None:
                return
            yield message

    echoes = []
    for echo in bidi(requests(), timeout=TIMEOUT):
        echoes.append(echo)
        turns.put(b"turn %d" % len(echoes) if len(echoes) < 5 else None)
    assert echoes == [b"turn %d" % i for i in range(5)], echoes
    print("bidirectional streaming ok")

    fail = channel.unary_unary("/ringlb.test.Echo/Fail")
    try:
        fail(b"x", timeout=TIMEOUT)
        raise AssertionError("Fail did not fail")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INTERNAL, e.code()
        assert e.details() == "boom", e.details()
    print("error status ok")

    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    assert check(b"", timeout=TIMEOUT) == b"\x08\x01"
    print("health check ok")


if __name__ == "__main__":
    main(sys.argv[1])
