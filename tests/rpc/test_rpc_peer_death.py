"""A worker killed with SIGKILL: calls pending on it fail quickly with
DistNetworkError, later calls to it fail at once, and the others carry on."""

import time

import pytest
import torch

import distgrad
import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import wait_for

WORLD_SIZE = 3


@pytest.fixture(scope="module")
def killed(cluster, tmp_path_factory):
    """Kills worker2 while worker0 and worker1 each wait for a call to it;
    returns those calls' futures and how long after the kill each failed."""
    markers = tmp_path_factory.mktemp("peer_death")
    # worker1 talks to worker2 before, so it holds a connection that breaks.
    assert rpc.rpc_sync("worker1", remote_fns.call, ("worker2", remote_fns.whoami)) == "worker2"
    futures = {
        "from worker0": rpc.rpc_async("worker2", remote_fns.touch_then_sleep, (str(markers / "a"), 60.0)),
        "from worker1": rpc.rpc_async("worker1", remote_fns.call, (
            "worker2", remote_fns.touch_then_sleep, (str(markers / "b"), 60.0))),
    }
    wait_for(lambda: (markers / "a").exists() and (markers / "b").exists(), 30, "worker2 to run both calls")
    start = time.monotonic()
    cluster.kill(2)
    failed_after = {}
    deadline = start + 10
    while len(failed_after) < len(futures) and time.monotonic() < deadline:
        for key, future in futures.items():
            if key not in failed_after and future.done():
                failed_after[key] = time.monotonic() - start
        time.sleep(0.005)
    return futures, failed_after


@pytest.mark.parametrize("caller", ["from worker0", "from worker1"])
def test_pending_call_fails_within_1_second(killed, caller):
    futures, failed_after = killed
    assert caller in failed_after, f"the call {caller} was still pending 10 s after worker2 died"
    assert failed_after[caller] < 1.0
    with pytest.raises(distgrad.DistNetworkError) as excinfo:
        futures[caller].wait()
    assert "worker 'worker2' (rank 2)" in str(excinfo.value)


CALLS = {
    "builtin": (torch.add, (torch.ones(1), 1)),
    "script": ("tests.script_fns.local_add", (torch.ones(1), torch.ones(1))),
    "python": (remote_fns.whoami, ()),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("to", ["worker2", 2], ids=["name", "rank"])
def test_later_calls_fail_at_once(killed, to, kind, mode):
    func, args = CALLS[kind]
    start = time.monotonic()
    with pytest.raises(distgrad.DistNetworkError) as excinfo:
        if mode == "sync":
            rpc.rpc_sync(to, func, args)
        else:
            rpc.rpc_async(to, func, args).wait()
    assert time.monotonic() - start < 0.5
    assert "worker 'worker2' (rank 2)" in str(excinfo.value)


def test_survivors_keep_working(killed):
    t = torch.arange(4.0)
    assert torch.equal(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)
    assert torch.equal(rpc.rpc_sync("worker1", "tests.script_fns.local_add", (t, t)), t + t)
    assert rpc.rpc_sync("worker0", remote_fns.whoami) == "worker0"
    # worker1 calling worker0 inside an RPC.
    assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
    result, path = rpc.rpc_sync("worker1", remote_fns.relay, (["worker0", "worker1"], t))
    assert path == ["worker1", "worker0", "worker1"]
    assert torch.equal(result, t + 3)


def test_survivor_calling_the_dead_worker(killed):
    start = time.monotonic()
    with pytest.raises(distgrad.DistNetworkError) as excinfo:
        rpc.rpc_sync("worker1", remote_fns.call, ("worker2", remote_fns.whoami))
    assert time.monotonic() - start < 0.5
    message = str(excinfo.value)
    assert "worker 'worker2' (rank 2)" in message
    assert message.endswith("(DistNetworkError raised on worker 'worker1')")


def test_worker_infos_still_list_the_dead_worker(killed):
    assert rpc.get_worker_infos()[2] == rpc.WorkerInfo("worker2", 2)
