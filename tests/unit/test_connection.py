"""A connection (transport/connection.h) over a socketpair: trySend,
which RRef release notices use from users' threads, writes a whole frame or
nothing, and never waits for the socket or for another sender; the reader's
poll gate is asked only when a read has to wait, and how long it polls
follows how long its frames took (transport/poll_window.h); a thread
waiting for a reply reads frames itself (pollFrames), in order with the
reader's, leaving it nothing and no failure unreported."""

import contextlib
import select
import socket
import threading
import time

import pytest
import torch

from distgrad import _unit

TYPE = 16  # the first type above the transport's own


@contextlib.contextmanager
def connected(poll_gate=None):
    """(our end as a Connection with poll_gate, the raw peer socket, the peer
    as a Connection)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(True)
    conn = _unit.Connection(ours.fileno(), poll_gate=poll_gate)
    peer = _unit.Connection(theirs.fileno())
    try:
        yield conn, theirs, peer
    finally:
        conn.close()
        peer.close()
        ours.close()
        theirs.close()


@pytest.fixture
def pair():
    with connected() as ends:
        yield ends


def fill(sock):
    """Writes to sock until its buffers are full; returns the byte count
    written. (Through a dup made non-blocking for the while: the flag belongs
    to the socket, which every dup of it shares, the Connection's too.)"""
    writer = socket.fromfd(sock.fileno(), sock.family, sock.type)
    writer.setblocking(False)
    written = 0
    try:
        while True:
            written += writer.send(b"x" * 65536)
    except BlockingIOError:
        pass
    finally:
        writer.setblocking(True)
        writer.close()
    return written


def call_within(seconds, fn, *args):
    """fn(*args), run in a thread: fails (rather than hanging the suite) if
    it has not returned within seconds."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} waited more than {seconds} s"
    return result[0]


def receive_sent_after(seconds, conn, peer, frame):
    """conn.receive(), with frame (type, id, meta) sent by peer seconds after
    the read began."""
    timer = threading.Timer(seconds, peer.send, args=frame)
    timer.start()
    try:
        return call_within(10, conn.receive)
    finally:
        timer.join()


def drain(sock, expected):
    """Reads expected bytes from sock and returns them."""
    data = bytearray()
    while len(data) < expected:
        data += sock.recv(expected - len(data))
    return bytes(data)


def test_try_send_writes_a_whole_frame(pair):
    conn, _, peer = pair
    assert conn.try_send(TYPE, 7, b"the release notice")
    assert peer.receive() == (TYPE, 7, b"the release notice", [])


def test_try_send_refuses_a_full_socket_and_writes_nothing():
    ours, theirs = socket.socketpair()
    conn = _unit.Connection(ours.fileno())
    try:
        written = fill(ours)
        assert written > 0
        assert not call_within(5, conn.try_send, TYPE, 1, b"notice")
        # The peer finds exactly the filler: no byte of the refused frame.
        assert drain(theirs, written) == b"x" * written
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)
        # With room again, it goes.
        assert conn.try_send(TYPE, 2, b"notice")
        peer = _unit.Connection(theirs.fileno())
        assert peer.receive() == (TYPE, 2, b"notice", [])
        peer.close()
    finally:
        conn.close()
        ours.close()
        theirs.close()


def test_try_send_does_not_wait_for_another_sender(pair):
    # A frame larger than the socket buffers blocks its sender until the
    # peer reads; meanwhile try_send returns at once, having sent nothing.
    conn, theirs, peer = pair
    big = b"m" * (2 << 20)
    sender = threading.Thread(target=conn.send, args=(TYPE, 1, big))
    sender.start()
    try:
        # Its first bytes have arrived: it holds the connection until the end.
        assert select.select([theirs], [], [], 10)[0]
        for _ in range(100):
            assert not call_within(5, conn.try_send, TYPE, 2, b"notice")
    finally:
        first = peer.receive()
        sender.join(timeout=10)
    assert not sender.is_alive()
    assert first == (TYPE, 1, big, [])
    assert conn.try_send(TYPE, 3, b"notice")
    assert peer.receive() == (TYPE, 3, b"notice", [])


def test_try_send_takes_no_tensors(pair):
    conn, _, _ = pair
    with pytest.raises(Exception, match="without tensors"):
        conn.try_send(TYPE, 1, b"", [torch.ones(2)])


def test_the_poll_gate_is_asked_only_when_a_read_has_to_wait():
    asked = []
    with connected(poll_gate=lambda: asked.append(1) or False) as (conn, _, peer):
        peer.send(TYPE, 1, b"already there")
        assert conn.receive() == (TYPE, 1, b"already there", [])
        assert asked == []
        assert receive_sent_after(0.005, conn, peer, (TYPE, 2, b"later")) == (TYPE, 2, b"later", [])
        assert asked


def test_the_poll_window_grows_to_twice_the_time_a_frame_took_and_halves_after_a_slow_one():
    window = _unit.PollWindow()
    assert window.current_us == 100
    steps = ((30, 100), (150, 300), (100, 300), (400, 800), (800, 800),
             (801, 400), (5000, 200), (10, 200), (5000, 100), (5000, 50), (5000, 25), (5000, 25))
    for waited, expected in steps:
        window.frame_after_us(waited)
        assert window.current_us == expected, waited


def test_a_frame_that_comes_long_after_the_read_began_halves_the_poll_window():
    # The gate always allows polling; the frame comes 50 ms after the read
    # began (to the blocking read, the first 100 µs of polling having run out).
    with connected(poll_gate=lambda: True) as (conn, theirs, peer):
        assert conn.poll_window_us == 100
        assert receive_sent_after(0.05, conn, peer, (TYPE, 1, b"late")) == (TYPE, 1, b"late", [])
        assert conn.poll_window_us == 50


def test_frames_a_waiter_read_past_the_one_it_waited_for_are_the_readers_in_order(pair):
    conn, _, peer = pair
    for i in range(3):
        peer.send(TYPE, i, b"frame %d" % i)
    # The three came in one read: the waiter handles the one it waits for
    # and leaves the others, read from the socket already, to the reader.
    assert conn.poll_frames(1) == [(TYPE, 0, b"frame 0", [])]
    assert call_within(10, conn.receive) == (TYPE, 1, b"frame 1", [])
    assert call_within(10, conn.receive) == (TYPE, 2, b"frame 2", [])
    peer.send(TYPE, 3, b"the next one")
    assert call_within(10, conn.receive) == (TYPE, 3, b"the next one", [])


def test_the_reader_sleeps_through_a_waiters_poll_and_wakes_for_what_comes_after(pair):
    conn, _, peer = pair
    received = []
    reader = threading.Thread(target=lambda: received.append(conn.receive()), daemon=True)
    reader.start()
    # Nothing comes: the poll ends with its window (100 µs at first).
    assert call_within(10, conn.poll_frames, 1) == []
    peer.send(TYPE, 1, b"after the poll")
    reader.join(10)
    assert received == [(TYPE, 1, b"after the poll", [])]


def test_a_frame_a_waiter_cannot_read_is_the_readers_to_report(pair):
    conn, theirs, _ = pair
    theirs.sendall(b"\xff" * 64)  # no frame header
    assert conn.poll_frames(1) == []
    # Told at once (the failure is kept for it), not after a wait.
    with pytest.raises(RuntimeError, match="bad magic"):
        conn.receive()


def test_a_waiter_gives_the_connection_back_after_a_while_and_the_reader_reads_on(pair):
    conn, _, peer = pair
    # 40 frames of 16 KiB, each taking 2 ms to handle: 80 ms of reading,
    # which the waiter stops after 10 ms.
    count, payload = 40, b"x" * 16384
    sender = threading.Thread(
        target=lambda: [peer.send(TYPE, i, payload) for i in range(count)], daemon=True)
    sender.start()
    time.sleep(0.05)  # the socket holds what it can; the rest waits in the sender
    frames = call_within(10, conn.poll_frames, 10**9, 2000)
    assert 0 < len(frames) < count
    rest = [call_within(10, conn.receive) for _ in range(count - len(frames))]
    sender.join(10)
    ids = [f[1] for f in frames] + [f[1] for f in rest]
    assert ids == list(range(count))  # nothing lost, nothing out of order
    assert all(f[2] == payload for f in frames + rest)
