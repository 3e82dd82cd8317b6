"""Call timeouts: an explicit timeout, none (0) and the default given to
init_rpc (-1). This module's job uses a 1 second default on worker0."""

import time

import pytest

import distgrad
import distgrad.rpc as rpc
from tests import remote_fns

WORLD_SIZE = 2
DEFAULT_TIMEOUT = 1.0
CLUSTER_OPTIONS = {"rpc_timeout": DEFAULT_TIMEOUT}

CALLS = [rpc.rpc_sync, lambda *args, **kwargs: rpc.rpc_async(*args, **kwargs).wait()]
CALL_IDS = ["sync", "async"]


def timed(call, *args, **kwargs):
    """Returns (the exception call raised, the seconds it took)."""
    start = time.monotonic()
    with pytest.raises(Exception) as excinfo:
        call(*args, **kwargs)
    return excinfo.value, time.monotonic() - start


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_explicit_timeout(cluster, call):
    error, elapsed = timed(call, "worker1", remote_fns.sleep_and_return, (1.5, "late"), timeout=0.5)
    assert isinstance(error, distgrad.DistTimeoutError)
    assert isinstance(error, TimeoutError)
    assert str(error) == "RPC to worker 'worker1' (rank 1) timed out after 0.5 seconds"
    assert 0.45 <= elapsed < 1.5


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_default_timeout(cluster, call):
    error, elapsed = timed(call, "worker1", remote_fns.sleep_and_return, (2.0, "late"))
    assert isinstance(error, distgrad.DistTimeoutError)
    assert str(error) == "RPC to worker 'worker1' (rank 1) timed out after 1 seconds"
    assert DEFAULT_TIMEOUT - 0.05 <= elapsed < DEFAULT_TIMEOUT + 1.0


def test_default_timeout_with_minus_one(cluster):
    error, _ = timed(rpc.rpc_sync, "worker1", remote_fns.sleep_and_return, (2.0, "late"), timeout=-1)
    assert isinstance(error, distgrad.DistTimeoutError)
    assert str(error) == "RPC to worker 'worker1' (rank 1) timed out after 1 seconds"


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_zero_means_no_timeout(cluster, call):
    assert call("worker1", remote_fns.sleep_and_return, (DEFAULT_TIMEOUT + 0.5, "done"), timeout=0) == "done"


@pytest.mark.parametrize("timeout", [float("inf"), 1e10, 1e300], ids=["inf", "1e10", "1e300"])
@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_timeout_too_long_to_represent_means_none(cluster, call, timeout):
    assert call("worker1", remote_fns.sleep_and_return, (DEFAULT_TIMEOUT + 0.2, "done"), timeout=timeout) == "done"


def test_explicit_timeout_longer_than_the_default(cluster):
    assert rpc.rpc_sync("worker1", remote_fns.sleep_and_return, (DEFAULT_TIMEOUT + 0.5, "done"), timeout=5) == "done"


def test_self_rpc_timeout(cluster):
    error, _ = timed(rpc.rpc_sync, "worker0", remote_fns.sleep_and_return, (1.0, "late"), timeout=0.3)
    assert isinstance(error, distgrad.DistTimeoutError)
    assert str(error) == "RPC to worker 'worker0' (rank 0) timed out after 0.3 seconds"


def test_late_response_does_not_reach_a_later_call(cluster):
    error, _ = timed(rpc.rpc_sync, "worker1", remote_fns.sleep_and_return, (0.6, "late"), timeout=0.2)
    assert isinstance(error, distgrad.DistTimeoutError)
    # The response to the timed-out call arrives while this call waits.
    assert rpc.rpc_sync("worker1", remote_fns.sleep_and_return, (1.0, "fresh"), timeout=5) == "fresh"


def test_timed_out_future_then_callback_sees_the_error(cluster):
    future = rpc.rpc_async("worker1", remote_fns.sleep_and_return, (1.0, "late"), timeout=0.3)

    def on_done(f):
        try:
            f.wait()
        except distgrad.DistTimeoutError as error:
            return str(error)
        return "no error"

    assert future.then(on_done).wait() == "RPC to worker 'worker1' (rank 1) timed out after 0.3 seconds"


def test_nested_call_timeout_on_a_worker(cluster):
    # worker1's own call back to worker0 times out; the error travels back.
    with pytest.raises(distgrad.DistTimeoutError) as excinfo:
        rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.sleep_and_return, (1.0, "late")),
                     {"timeout": 0.3}, timeout=5)
    message = str(excinfo.value)
    assert message.startswith("RPC to worker 'worker0' (rank 0) timed out after 0.3 seconds")
    assert message.endswith("(DistTimeoutError raised on worker 'worker1')")
