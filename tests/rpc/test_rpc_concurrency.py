"""Many calls at once: from several threads, and many futures outstanding."""

import torch

import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.checks import run_in_threads

NUM_THREADS = 8
CALLS_PER_THREAD = 30


def test_threads_each_get_their_own_results(cluster):
    completed = [0] * NUM_THREADS

    def body(index):
        for i in range(CALLS_PER_THREAD):
            dst = f"worker{i % 3}"
            # Values unique to this thread and iteration.
            t = torch.full((4, 3), float(index * 1000 + i))
            kind = i % 4
            if kind == 0:
                result = rpc.rpc_sync(dst, torch.add, (t, index))
                expected = t + index
            elif kind == 1:
                result = rpc.rpc_sync(dst, script_fns.local_add, (t, t))
                expected = t + t
            elif kind == 2:
                result, where = rpc.rpc_sync(dst, remote_fns.relay, ([], t))
                assert where == [dst]
                expected = t + 1
            else:
                result = rpc.rpc_async(dst, remote_fns.combine, (t, t), {"scale": index}).wait()["sum"]
                expected = t + index * t
            assert torch.equal(result, expected), (index, i, result, expected)
            completed[index] += 1

    run_in_threads(body, NUM_THREADS)
    assert completed == [CALLS_PER_THREAD] * NUM_THREADS


def test_many_outstanding_futures(cluster):
    futures = [rpc.rpc_async(f"worker{i % 3}", torch.mul, (torch.arange(3.0), i)) for i in range(300)]
    results = torch.futures.wait_all(futures)
    for i, result in enumerate(results):
        assert torch.equal(result, torch.arange(3.0) * i), i


def test_calls_while_another_worker_is_busy(cluster):
    # Long Python calls occupy worker1; worker2 and worker0 still answer at once.
    slow = [rpc.rpc_async("worker1", remote_fns.sleep_and_return, (1.5, i)) for i in range(3)]
    for _ in range(20):
        assert rpc.rpc_sync("worker2", remote_fns.whoami) == "worker2"
        assert rpc.rpc_sync("worker0", torch.neg, (torch.ones(1),)).item() == -1.0
    assert not all(f.done() for f in slow)
    assert torch.futures.wait_all(slow) == [0, 1, 2]


def test_runtime_threads_are_named_after_their_role(cluster):
    # For top, perf and /proc: a Python call runs on a pool thread, and
    # every connection has its reader.
    names, caller = rpc.rpc_sync("worker1", remote_fns.thread_names)
    assert caller == "distgrad-pool"
    assert names.count("distgrad-reader") >= 1
    assert names.count("distgrad-pool") == rpc.constants.DEFAULT_NUM_WORKER_THREADS
    assert "distgrad-accept" in names
