"""Connections that are not from a worker of the job: a worker drops them,
logs why, and keeps serving everyone else. They cost it no thread, each has
a deadline for its whole handshake, and a recorded handshake cannot be
replayed. A connection that proves it holds the key learns the worker's
message limits, and a frame it starts must not stall. Raw sockets speak the
wire format against 127.0.0.1."""

import hashlib
import hmac
import os
import resource
import secrets
import socket
import struct
import time

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import job_key, listening_address, wait_for

WORLD_SIZE = 3
HANDSHAKE_TIMEOUT = 1.5
FRAME_TIMEOUT = 1.0
CLUSTER_OPTIONS = {"env": {"DISTGRAD_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
                           "DISTGRAD_FRAME_TIMEOUT": str(FRAME_TIMEOUT)}}

# Frame header (operators/transport/frame.h): magic u32 | version u16 |
# type u16 | id u64 | meta_len u32 | desc_len u32 | data_len u64, little-endian.
HEADER = struct.Struct("<IHHQIIQ")
MAGIC = 0x44524744
VERSION = 2
# operators/transport/handshake.h
HELLO, ACCEPT, CHALLENGE, PROOF = 1, 2, 6, 7
NONCE_BYTES = 32
NO_ARENA = struct.pack("<iiQ16s", -1, -1, 0, b"")
# Message limits (frame.h FrameLimits: max metadata, max tensor data); the
# workers here keep the defaults.
LIMITS = struct.Struct("<QQ")
DEFAULT_LIMITS = (0xFFFFFFFF, 16 << 30)
REQUEST = 16


def frame(type_, id_, meta=b"", *, magic=MAGIC, version=VERSION, meta_len=None, desc_len=0, data_len=0):
    header = HEADER.pack(magic, version, type_, id_, len(meta) if meta_len is None else meta_len, desc_len, data_len)
    return header + meta


def hello(rank=0):
    return frame(HELLO, rank, secrets.token_bytes(NONCE_BYTES))


def proof_meta(mac):
    return struct.pack("<I", len(mac)) + mac + LIMITS.pack(*DEFAULT_LIMITS) + NO_ARENA


def proof_mac(key_bytes, connector, acceptor, connector_nonce, acceptor_nonce):
    """The proof a worker holding the key would send (handshake.h)."""
    message = b"distgrad proof\0%d\0%d\0" % (connector, acceptor) + connector_nonce + acceptor_nonce
    return hmac.new(key_bytes, message, hashlib.sha256).digest()


def read_frame(sock):
    header = b""
    while len(header) < HEADER.size:
        chunk = sock.recv(HEADER.size - len(header))
        if not chunk:
            return None
        header += chunk
    _, _, type_, id_, meta_len, _, _ = HEADER.unpack(header)
    meta = b""
    while len(meta) < meta_len:
        meta += sock.recv(meta_len - len(meta))
    return type_, id_, meta


def closed_without_reply(sock):
    """Whether the peer closed the connection without sending anything (a
    reset counts: closing with unread bytes sends one)."""
    try:
        return sock.recv(HEADER.size) == b""
    except ConnectionResetError:
        return True


def connect_to(rank):
    host, port = listening_address(rank).rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def challenged(sock, rank=0):
    """Sends a hello; returns (our nonce, the worker's nonce) from its challenge."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sock.sendall(frame(HELLO, rank, nonce))
    type_, _, meta = read_frame(sock)
    assert type_ == CHALLENGE
    return nonce, meta[:NONCE_BYTES]


def assert_everyone_still_served():
    t = torch.arange(3.0)
    assert torch.equal(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)
    result, path = rpc.rpc_sync("worker2", remote_fns.relay, (["worker1", "worker0", "worker1"], t))
    assert path == ["worker2", "worker1", "worker0", "worker1"]
    assert torch.equal(result, t + 4)


def logged(cluster, rank, local_address, reason):
    line = f"[distgrad worker{rank}] dropped connection from {local_address}: {reason}"
    wait_for(lambda: line in cluster.log(rank), 10, f"{line!r} in the log of worker{rank}")


# (bytes to send, whether to close our side after sending, the reason logged)
BAD_FIRST_FRAMES = {
    "malformed-hello": (lambda: frame(HELLO, 0, b"\xff\xff"), False, "malformed hello"),
    "garbage": (lambda: b"GET / HTTP/1.1\r\nHost: worker1\r\nAccept: */*\r\n\r\n", False,
                f"bad magic {int.from_bytes(b'GET ', 'little')}"),
    "wrong-version": (lambda: frame(HELLO, 0, b"x", version=7), False, "unsupported protocol version 7"),
    "absurd-meta-length": (lambda: frame(HELLO, 0, meta_len=0xFFFFFFFF), False,
                           "metadata length 4294967295 over the maximum 4096"),
    "absurd-data-length": (lambda: frame(HELLO, 0, desc_len=8, data_len=1 << 62), False,
                           f"tensor data length {1 << 62} over the maximum 0"),
    "tensors-in-hello": (lambda: frame(HELLO, 0, desc_len=8), False, "a handshake frame carries no tensors"),
    "not-a-hello": (lambda: frame(ACCEPT, 0), False, "expected a hello, got frame type 2"),
    "proof-first": (lambda: frame(PROOF, 0, proof_meta(b"x" * 32)), False, "expected a hello, got frame type 7"),
    "rank-out-of-range": (lambda: hello(99), False, "rank 99 out of range for world size 3"),
    "disconnect-mid-header": (lambda: hello()[:20], True, "closed before its handshake"),
    "disconnect-at-once": (lambda: b"", True, "closed before its handshake"),
}


@pytest.mark.parametrize("case", BAD_FIRST_FRAMES)
def test_bad_first_frame_is_dropped_and_logged(cluster, case):
    make_bytes, close_after_sending, reason = BAD_FIRST_FRAMES[case]
    with connect_to(1) as sock:
        local_address = "%s:%d" % sock.getsockname()
        sock.sendall(make_bytes())
        if close_after_sending:
            sock.shutdown(socket.SHUT_WR)
        assert closed_without_reply(sock)
    logged(cluster, 1, local_address, reason)
    assert_everyone_still_served()


@pytest.mark.parametrize("mac", [b"", b"\0" * 32, secrets.token_bytes(32), secrets.token_bytes(64)],
                         ids=["empty", "zeros", "random", "long"])
def test_proof_without_the_key_is_refused(cluster, mac):
    with connect_to(1) as sock:
        local_address = "%s:%d" % sock.getsockname()
        challenged(sock)
        sock.sendall(frame(PROOF, 0, proof_meta(mac)))
        assert closed_without_reply(sock)
    logged(cluster, 1, local_address, "it does not hold the job key")


def test_recorded_proof_cannot_be_replayed(cluster):
    # A proof made with the key for one challenge (as an eavesdropper would
    # have seen it) does not answer the challenge of another connection.
    key = job_key()
    with connect_to(1) as first:
        nonce, first_challenge = challenged(first)
        recorded = proof_mac(key, 0, 1, nonce, first_challenge)
    with connect_to(1) as second:
        local_address = "%s:%d" % second.getsockname()
        sock_nonce = nonce
        second.sendall(frame(HELLO, 0, sock_nonce))
        read_frame(second)  # a fresh challenge
        second.sendall(frame(PROOF, 0, proof_meta(recorded)))
        assert closed_without_reply(second)
    logged(cluster, 1, local_address, "it does not hold the job key")
    assert_everyone_still_served()


def test_challenge_reveals_nothing_but_proves_the_worker(cluster):
    # The worker's challenge carries its nonce and a MAC binding both nonces
    # and both ranks: checked here with the job's key.
    key = job_key()
    with connect_to(2) as sock:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sock.sendall(frame(HELLO, 1, nonce))
        type_, rank, meta = read_frame(sock)
    assert (type_, rank, len(meta)) == (CHALLENGE, 2, NONCE_BYTES + 32)
    their_nonce, mac = meta[:NONCE_BYTES], meta[NONCE_BYTES:]
    expected = hmac.new(key, b"distgrad challenge\0002\0001\0" + nonce + their_nonce, hashlib.sha256).digest()
    assert mac == expected


def test_slow_handshake_is_dropped_at_its_deadline(cluster):
    # One byte every 0.2 s: each read makes progress, but the handshake as a
    # whole must end within HANDSHAKE_TIMEOUT.
    data = hello()
    with connect_to(1) as sock:
        local_address = "%s:%d" % sock.getsockname()
        start = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
            assert closed_without_reply(sock)
            raise ConnectionResetError  # the whole hello went out in time: not expected
        assert time.monotonic() - start < HANDSHAKE_TIMEOUT + 2.0
    logged(cluster, 1, local_address, "its handshake did not finish in time")


def test_silent_connections_take_no_thread(cluster):
    pid = cluster.pid(1)
    threads_before = len(os.listdir(f"/proc/{pid}/task"))
    socks = [connect_to(1) for _ in range(100)]
    try:
        assert_everyone_still_served()
        assert len(os.listdir(f"/proc/{pid}/task")) <= threads_before
    finally:
        for sock in socks:
            sock.close()
    assert_everyone_still_served()


def test_handshakes_under_way_are_capped(cluster):
    # Beyond 64 pending handshakes, the oldest are dropped for new ones.
    socks = [connect_to(2) for _ in range(70)]
    try:
        dropped = sum(1 for sock in socks[:6] if closed_without_reply(sock))
        assert dropped == 6
        assert cluster.log(2).count("too many handshakes under way") >= 6
        assert_everyone_still_served()
    finally:
        for sock in socks:
            sock.close()


def test_accepting_survives_running_out_of_file_descriptors(cluster):
    pid = cluster.pid(2)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    socks = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds + 5, hard))
        socks = [connect_to(2) for _ in range(20)]
        wait_for(lambda: "cannot accept connections for a moment" in cluster.log(2), 10,
                 "worker2 to run out of file descriptors")
    finally:
        for sock in socks:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    # Accepting resumed: a new connection is challenged again.
    time.sleep(0.2)
    with connect_to(2) as sock:
        challenged(sock)
    assert_everyone_still_served()


def test_many_bad_connections_in_a_row(cluster):
    for i in range(20):
        with connect_to(2) as sock:
            challenged(sock, rank=i % 3)
            sock.sendall(frame(PROOF, i % 3, proof_meta(secrets.token_bytes(32))))
            assert closed_without_reply(sock)
    assert_everyone_still_served()
    wait_for(lambda: cluster.log(2).count("it does not hold the job key") >= 20, 10, "20 refusals logged")


def test_a_frame_that_stalls_is_dropped_without_losing_the_peer(cluster):
    # With the key (as a worker of the job): the accept announces worker1's
    # limits; a frame that stops halfway is dropped after FRAME_TIMEOUT.
    assert_everyone_still_served()  # worker1's own connection from worker0 is up
    key = job_key()
    with connect_to(1) as sock:
        nonce, their_nonce = challenged(sock, rank=0)
        sock.sendall(frame(PROOF, 0, proof_meta(proof_mac(key, 0, 1, nonce, their_nonce))))
        type_, rank, meta = read_frame(sock)
        assert (type_, rank) == (ACCEPT, 1)
        assert LIMITS.unpack(meta[:LIMITS.size]) == DEFAULT_LIMITS
        sock.sendall(frame(REQUEST, 1, meta_len=100) + b"x" * 10)
        start = time.monotonic()
        assert closed_without_reply(sock)
        elapsed = time.monotonic() - start
    assert FRAME_TIMEOUT - 0.1 <= elapsed < FRAME_TIMEOUT + 2.0
    # That was not worker0's connection: worker0 is not lost.
    assert_everyone_still_served()
    assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
