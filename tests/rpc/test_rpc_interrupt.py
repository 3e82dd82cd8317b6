"""Ctrl-C (SIGINT) while this process waits in distgrad raises
KeyboardInterrupt in the main thread at once, and the process can then exit
cleanly. Each case is a program run in a process of its own: the signal is
sent once it is blocked, and the time until it reports the interrupt is
measured."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.checks import free_port
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each case is a program with a job of its own.
pytestmark = pytest.mark.no_cluster

# Bounds every wait of these tests.
DEADLINE = 60.0
# How soon after SIGINT the program must report KeyboardInterrupt.
LATENCY = 0.5

PROGRAM = textwrap.dedent("""
    import signal
    import sys
    import time

    import distgrad.rpc as rpc

    # Ctrl-C raises KeyboardInterrupt, as in a program started from a
    # terminal, even when the suite itself was started in the background (a
    # shell starts background jobs with SIGINT ignored; Python keeps it so).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    case, rank, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    init = dict(rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}", timeout=30)
    if rank == 1:
        # The peer: joins, then serves until it is killed.
        rpc.init_rpc("worker1", **init)
        print("ready", flush=True)
        time.sleep(120)
        sys.exit(0)
    if case.startswith("init_rpc"):
        # Nobody else comes: rank 0 waits for rank 1, rank 1 for the store.
        init["rank"] = 1 if case == "init_rpc_no_store" else 0
        print("blocking", flush=True)
        try:
            rpc.init_rpc("lonely", **init)
        except KeyboardInterrupt:
            print("caught KeyboardInterrupt", flush=True)
        sys.exit(0)
    rpc.init_rpc("worker0", **init)
    print("blocking", flush=True)
    try:
        if case == "rpc_sync":
            rpc.rpc_sync("worker1", time.sleep, (60,))
        elif case == "future_wait":
            rpc.rpc_async("worker1", time.sleep, (60,)).wait()
        elif case == "to_here":
            rpc.remote("worker1", time.sleep, (60,)).to_here()
        elif case == "shutdown":
            # worker1 never calls shutdown.
            rpc.shutdown()
        print("returned", flush=True)
    except KeyboardInterrupt:
        print("caught KeyboardInterrupt", flush=True)
    # Exits with the call still running on worker1 (or with the job still
    # up): atexit closes it.
""")


def start(case, rank, port):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-c", PROGRAM, case, str(rank), str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_line(proc, deadline):
    line = proc.stdout.readline()
    assert time.monotonic() < deadline, "the program took too long"
    return line.strip()


@pytest.mark.parametrize("case", ["rpc_sync", "future_wait", "to_here", "shutdown", "init_rpc", "init_rpc_no_store"])
def test_sigint_raises_keyboard_interrupt(case):
    port = free_port()
    deadline = time.monotonic() + DEADLINE
    procs = [start(case, 0, port)]
    try:
        if not case.startswith("init_rpc"):
            procs.append(start(case, 1, port))
        main = procs[0]
        assert read_line(main, deadline) == "blocking", main.stderr.read()
        # Long enough to be inside the wait, not on the way there.
        time.sleep(1.0)
        assert main.poll() is None
        sent = time.monotonic()
        main.send_signal(signal.SIGINT)
        line = read_line(main, deadline)
        latency = time.monotonic() - sent
        print(f"{case}: SIGINT to KeyboardInterrupt in {latency * 1000:.0f} ms")
        assert line == "caught KeyboardInterrupt", main.communicate(timeout=10)
        assert latency < LATENCY
        # Then exits on its own, quietly (no hang, no abort, no C++ trace).
        _, stderr = main.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert main.returncode == 0, stderr
        assert "terminate called" not in stderr and "frame #" not in stderr, stderr
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
