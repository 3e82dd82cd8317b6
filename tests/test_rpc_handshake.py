"""Connections that are not from a worker of the job: a worker drops them,
logs why, and keeps serving everyone else."""

import socket
import struct

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import wait_for

WORLD_SIZE = 3

# Frame header (operators/transport/frame.h): magic u32 | version u16 |
# type u16 | id u64 | meta_len u32 | desc_len u32 | data_len u64, little-endian.
HEADER = struct.Struct("<IHHQIIQ")
MAGIC = 0x44524744
VERSION = 2
# operators/transport/handshake.h: id = rank, meta = secret length u32 |
# secret | shared memory announcement (pid i32 | fd i32 | size u64 | token).
HELLO = 1
ACCEPT = 2
NO_ARENA = struct.pack("<iiQ16s", -1, -1, 0, b"")


def frame(type_, id_, meta=b"", *, magic=MAGIC, version=VERSION, meta_len=None, desc_len=0, data_len=0):
    header = HEADER.pack(magic, version, type_, id_, len(meta) if meta_len is None else meta_len, desc_len, data_len)
    return header + meta


def hello_meta(secret_bytes):
    return struct.pack("<I", len(secret_bytes)) + secret_bytes + NO_ARENA


def secret():
    return remote_fns.job_secret().encode()


# (bytes to send, whether to close our side after sending, the reason logged)
BAD_CONNECTIONS = {
    "wrong-secret": (lambda: frame(HELLO, 0, hello_meta(b"not the job secret")), False, "wrong job secret"),
    "empty-secret": (lambda: frame(HELLO, 0, hello_meta(b"")), False, "wrong job secret"),
    "secret-prefix": (lambda: frame(HELLO, 0, hello_meta(secret()[:-1])), False, "wrong job secret"),
    "malformed-hello": (lambda: frame(HELLO, 0, b"\xff\xff"), False, "malformed hello"),
    "garbage": (lambda: b"GET / HTTP/1.1\r\nHost: worker1\r\nAccept: */*\r\n\r\n", False,
                f"bad magic {int.from_bytes(b'GET ', 'little')}"),
    "wrong-version": (lambda: frame(HELLO, 0, b"x", version=7), False, "unsupported protocol version 7"),
    "absurd-meta-length": (lambda: frame(HELLO, 0, meta_len=0xFFFFFFFF), False,
                           "metadata length 4294967295 over the maximum 4096"),
    "absurd-data-length": (lambda: frame(HELLO, 0, desc_len=8, data_len=1 << 62), False,
                           f"tensor data length {1 << 62} over the maximum 0"),
    "not-a-hello": (lambda: frame(ACCEPT, 0), False, "expected a hello frame, got frame type 2"),
    "rank-out-of-range": (lambda: frame(HELLO, 99, hello_meta(secret())), False,
                          "rank 99 out of range for world size 3"),
    "disconnect-mid-header": (lambda: frame(HELLO, 0, b"secret")[:20], True,
                              "peer closed the connection in the middle of a frame"),
    "disconnect-mid-meta": (lambda: frame(HELLO, 0, b"x" * 64)[:HEADER.size + 10], True,
                            "peer closed the connection in the middle of a frame"),
    "disconnect-at-once": (lambda: b"", True, "closed before its handshake"),
}


def closed_without_reply(sock):
    """Whether the peer closed the connection without sending anything (a
    reset counts: closing with unread bytes sends one)."""
    try:
        return sock.recv(HEADER.size) == b""
    except ConnectionResetError:
        return True


def connect_to(rank):
    # Read here on worker0, which hosts the rendezvous store: a worker's own
    # store client is busy in the shutdown barrier its main thread waits in.
    host, port = remote_fns.listening_address(rank).rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def assert_everyone_still_served():
    t = torch.arange(3.0)
    assert torch.equal(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)
    result, path = rpc.rpc_sync("worker2", remote_fns.relay, (["worker1", "worker0", "worker1"], t))
    assert path == ["worker2", "worker1", "worker0", "worker1"]
    assert torch.equal(result, t + 4)


@pytest.mark.parametrize("case", BAD_CONNECTIONS)
def test_bad_connection_is_dropped_and_logged(cluster, case):
    make_bytes, close_after_sending, reason = BAD_CONNECTIONS[case]
    data = make_bytes()
    with connect_to(1) as sock:
        local_address = "%s:%d" % sock.getsockname()
        sock.sendall(data)
        if close_after_sending:
            sock.shutdown(socket.SHUT_WR)
        # The worker closes the connection without accepting it.
        assert closed_without_reply(sock)
    line = f"[distgrad worker1] dropped connection from {local_address}: {reason}"
    wait_for(lambda: line in cluster.log(1), 10, f"{line!r} in the log of worker1")
    assert_everyone_still_served()


def test_silent_connection_does_not_hold_up_others(cluster):
    with connect_to(1) as silent:
        local_address = "%s:%d" % silent.getsockname()
        assert_everyone_still_served()
        # A second stranger is served (dropped) while the first says nothing.
        with connect_to(1) as other:
            other.sendall(frame(HELLO, 0, hello_meta(b"wrong")))
            assert closed_without_reply(other)
        assert_everyone_still_served()
    line = f"[distgrad worker1] dropped connection from {local_address}: closed before its handshake"
    wait_for(lambda: line in cluster.log(1), 10, f"{line!r} in the log of worker1")


def test_many_bad_connections_in_a_row(cluster):
    for i in range(20):
        with connect_to(2) as sock:
            sock.sendall(frame(HELLO, i % 3, hello_meta(b"guess %d" % i)))
            assert closed_without_reply(sock)
    assert_everyone_still_served()
    assert cluster.log(2).count("wrong job secret") == 20
