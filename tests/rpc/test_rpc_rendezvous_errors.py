"""What a user gets wrong in the first hour fails quickly, at init_rpc or
shutdown, with a message that says what happened: differing world sizes, a
worker that never comes, a port taken by another program, a store that went
away. Each job is a set of processes of its own, bounded in time; their
stderr must hold no C++ stack trace."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import distgrad.rpc as rpc
from distgrad import DistError
from tests.checks import free_port
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job.
pytestmark = pytest.mark.no_cluster

# Bounds each job, start to exit.
DEADLINE = 60.0

PROGRAM = textwrap.dedent("""
    import sys
    import time

    import distgrad.rpc as rpc

    case, rank, world_size, port, timeout = sys.argv[1:]
    rank, world_size, timeout = int(rank), int(world_size), float(timeout)
    start = time.monotonic()
    try:
        rpc.init_rpc(f"worker{rank}", rank=rank, world_size=world_size, init_method=f"tcp://127.0.0.1:{port}",
                     timeout=timeout)
        if case == "shutdown":
            if rank == 0:
                rpc.shutdown(timeout=timeout)
            else:
                time.sleep(timeout + 10)  # never calls shutdown; killed by the test
        else:
            rpc.shutdown()
        print("ok", flush=True)
    except Exception as error:
        print(f"{time.monotonic() - start:.2f} {type(error).__name__}: {error}", flush=True)
""")


def run_workers(case, ranks, world_sizes, timeouts, port=None, wait_for=None):
    """Runs one process per rank at once; returns (elapsed seconds, error line or
    "ok", stderr) of those in wait_for (default: all), killing the rest."""
    port = port or free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    procs = {}
    try:
        for rank, world_size, timeout in zip(ranks, world_sizes, timeouts):
            procs[rank] = subprocess.Popen(
                [sys.executable, "-c", PROGRAM, case, str(rank), str(world_size), str(port), str(timeout)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True)
        deadline = time.monotonic() + DEADLINE
        results = {}
        for rank in (wait_for if wait_for is not None else ranks):
            stdout, stderr = procs[rank].communicate(timeout=max(0.0, deadline - time.monotonic()))
            results[rank] = (stdout.strip(), stderr)
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def parse(result):
    line, stderr = result
    assert "frame #" not in stderr and "Exception raised from" not in stderr, stderr
    elapsed, _, error = line.partition(" ")
    return float(elapsed), error


@pytest.mark.parametrize("world_sizes", [(2, 3), (3, 2)])
def test_mismatched_world_size_fails_every_worker(world_sizes):
    results = run_workers("init", [0, 1], world_sizes, [30, 30])
    for rank, result in results.items():
        elapsed, error = parse(result)
        assert error.startswith("ValueError: world_size differs between workers:"), error
        assert f"worker 'worker{1 - rank}' (rank {1 - rank}) was given {world_sizes[1 - rank]}" in error
        assert f"worker 'worker{rank}' (rank {rank}) {world_sizes[rank]}" in error
        assert elapsed < 10


def test_a_worker_that_never_comes_is_named_and_the_timeout_honoured():
    # world_size 3, rank 2 never starts. Rank 0, which hosts the store,
    # gives up last (when it goes, the store goes with it).
    timeouts = [4, 3]
    results = run_workers("init", [0, 1], [3, 3], timeouts)
    for rank, result in results.items():
        elapsed, error = parse(result)
        assert error.startswith(f"DistTimeoutError: rank 2 did not join within {timeouts[rank]} s"), error
        assert timeouts[rank] <= elapsed < timeouts[rank] + 1


def test_no_store_within_the_timeout():
    # Rank 0, which hosts the store, never starts.
    [result] = run_workers("init", [1], [2], [2]).values()
    elapsed, error = parse(result)
    assert error.startswith(f"DistTimeoutError: rank 1 found no rendezvous store at 127.0.0.1:"), error
    assert "within 2 s" in error and "rank 0 hosts it" in error
    assert 2 <= elapsed < 3


def test_a_store_closed_during_rendezvous_is_reported_as_such():
    # Rank 0 gives up after 2 s (rank 2 never comes) and exits, closing the
    # store rank 1 still waits at with a timeout of 30 s.
    results = run_workers("init", [0, 1], [3, 3], [2, 30])
    _, error = parse(results[0])
    assert error.startswith("DistTimeoutError: rank 2 did not join within 2 s"), error
    elapsed, error = parse(results[1])
    assert error.startswith("DistNetworkError: rank 1 lost the rendezvous store at 127.0.0.1:"), error
    assert "rank 0, which hosts it, has probably exited" in error
    assert elapsed < 10


def test_a_graceful_shutdown_names_the_worker_it_waits_for():
    results = run_workers("shutdown", [0, 1], [2, 2], [2, 2], wait_for=[0])
    elapsed, error = parse(results[0])
    assert error == "DistTimeoutError: only 1 of 2 workers reached 'shutdown' within 2 s; missing: worker1 (rank 1)"
    assert elapsed < 10


def test_port_held_by_another_program():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(DistError) as excinfo:
            rpc.init_rpc("solo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}", timeout=10)
    message = str(excinfo.value)
    assert message.startswith(f"rank 0 could not host the rendezvous store at 127.0.0.1:{port} ("), message
    assert "address already in use" in message.lower()
    assert "choose another port (MASTER_PORT)" in message
    assert time.monotonic() - start < 5
    # Nothing is left behind: a job can start.
    rpc.init_rpc("solo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{free_port()}", timeout=10)
    rpc.shutdown()
