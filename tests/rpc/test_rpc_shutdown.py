"""Shutdown: a graceful one ends every worker process cleanly, after the
calls in flight; a second one does nothing; a new job can follow. Each test
runs its own job."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import distgrad
import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job, to shut it down.
pytestmark = pytest.mark.no_cluster


def os_threads():
    """The ids of this process's OS threads."""
    return set(os.listdir("/proc/self/task"))


def test_graceful_stop_waits_for_calls_in_flight_and_ends_every_worker_with_exit_code_0():
    torch.randn(1 << 20).sum()  # starts torch's own threads before counting
    threads_before = os_threads()
    job = Cluster(3, root=ROOT).start()
    try:
        futures = [
            rpc.rpc_async("worker1", remote_fns.sleep_and_return, (0.5, "one")),
            rpc.rpc_async("worker2", remote_fns.call, ("worker1", remote_fns.sleep_and_return, (0.5, "two"))),
        ]
    finally:
        job.stop()
    assert [f.done() for f in futures] == [True, True]
    assert torch.futures.wait_all(futures) == ["one", "two"]
    assert [job.returncode(rank) for rank in (1, 2)] == [0, 0]
    # Every thread the job started in this process has ended (threads of
    # earlier tests may have ended too).
    assert os_threads() <= threads_before


def test_shutdown_twice_is_harmless_and_a_new_job_can_follow():
    job = Cluster(2, root=ROOT).start()
    job.stop()
    rpc.shutdown()
    rpc.shutdown(graceful=False)
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
        rpc.rpc_sync("worker1", remote_fns.whoami)
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
        rpc.get_worker_infos()

    job = Cluster(2, root=ROOT).start()
    try:
        assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
    finally:
        job.stop()
    assert job.returncode(1) == 0


def test_non_graceful_shutdown_fails_pending_calls():
    job = Cluster(2, root=ROOT).start()
    try:
        future = rpc.rpc_async("worker1", remote_fns.sleep_and_return, (5.0, "late"))
        rpc.shutdown(graceful=False)
        with pytest.raises(distgrad.DistNetworkError) as excinfo:
            future.wait()
        assert str(excinfo.value) == (
            "distgrad RPC was shut down on worker 'worker0' before the call to worker 'worker1' completed")
    finally:
        job.stop(graceful=False)


def test_graceful_shutdown_with_a_dead_worker_fails_fast():
    job = Cluster(3, root=ROOT).start()
    try:
        job.kill(2)
        with pytest.raises(distgrad.DistNetworkError):
            rpc.rpc_sync("worker2", remote_fns.whoami)
        start = time.monotonic()
        with pytest.raises(distgrad.DistNetworkError) as excinfo:
            rpc.shutdown(graceful=True, timeout=30)
        assert time.monotonic() - start < 5
        # worker0 never connected to worker2: it learnt it was gone when it tried.
        assert str(excinfo.value).startswith(
            "cannot shut down gracefully: cannot connect to worker 'worker2' (rank 2) at 127.0.0.1:")
        # The job is closed here even so.
        with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
            rpc.get_worker_infos()
    finally:
        job.stop(graceful=False)


def test_the_process_of_rank_0_exits_after_stop(tmp_path):
    # Nothing the job started may keep a process alive after a graceful stop.
    script = textwrap.dedent("""
        import torch
        import distgrad.rpc as rpc
        from distgrad._testing import Cluster
        from tests import remote_fns

        job = Cluster(3, root=%r).start()
        rpc.rpc_sync("worker1", remote_fns.relay, (["worker2", "worker0"], torch.zeros(1)))
        rpc.rpc_async("worker2", remote_fns.sleep_and_return, (0.2, None))
        job.stop()
        print("stopped", [job.returncode(r) for r in (1, 2)])
    """) % str(ROOT)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=90,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "stopped [0, 0]\n"


def test_non_graceful_shutdown_does_not_wait_for_blocked_callbacks():
    import threading

    job = Cluster(2, root=ROOT).start()
    release = threading.Event()
    try:
        entered = threading.Event()

        def stuck(fut):
            entered.set()
            release.wait(60)  # user code that does not return
            return fut.wait()

        future = rpc.rpc_async("worker1", remote_fns.whoami).then(stuck)
        assert entered.wait(10)
        start = time.monotonic()
        rpc.shutdown(graceful=False)
        assert time.monotonic() - start < 5
    finally:
        release.set()
        job.stop(graceful=False)
    assert future.wait() == "worker1"


def test_graceful_shutdown_notices_a_dead_worker_it_never_talked_to():
    job = Cluster(3, root=ROOT).start()
    try:
        job.kill(2)
        start = time.monotonic()
        with pytest.raises(distgrad.DistNetworkError) as excinfo:
            rpc.shutdown(graceful=True, timeout=30)
        # The barrier probes the workers it waits for: worker2's port refuses.
        assert time.monotonic() - start < 5
        assert str(excinfo.value).startswith(
            "cannot shut down gracefully: cannot connect to worker 'worker2' (rank 2) at 127.0.0.1:")
    finally:
        job.stop(graceful=False)


def test_shutdown_from_a_thread_of_the_runtime_is_refused_and_the_worker_keeps_serving():
    # From a thread serving a call, or completing a future, shutdown would
    # wait for that thread itself: it fails with the rule it breaks.
    job = Cluster(2, root=ROOT).start()
    try:
        # worker1 asks this worker (rank 0, whose main thread is not shutting
        # down) to shut down from the thread serving that call.
        with pytest.raises(RuntimeError, match="Agent::shutdown\\(\\) must not be called from a pool thread"):
            rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.shutdown_here))
        assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
        refused = rpc.rpc_async("worker1", remote_fns.whoami).then(lambda fut: rpc.shutdown(graceful=False))
        with pytest.raises(RuntimeError, match="Agent::shutdown\\(\\) must not be called from a callback pool thread"):
            refused.wait()
        assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
    finally:
        job.stop()
