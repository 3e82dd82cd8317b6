"""@rpc.functions.async_execution: the callee replies when the returned
future completes, holding no thread meanwhile."""

import pytest
import torch

import distgrad.rpc as rpc
from tests.rpc import async_fns
from tests.checks import assert_same, remote_message, run_in_threads

WORLD_SIZE = 3
X = torch.tensor([1.0, 2.0])
Y = torch.tensor([10.0, 20.0])


def call(mode, to, func, args):
    """func(*args) on `to` by rpc_sync, rpc_async or remote."""
    if mode == "rpc_sync":
        return rpc.rpc_sync(to, func, args)
    if mode == "rpc_async":
        return rpc.rpc_async(to, func, args).wait()
    return rpc.remote(to, func, args).to_here()


MODES = ["rpc_sync", "rpc_async", "remote"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("func", [async_fns.async_add, async_fns.AsyncMath.add], ids=["function", "staticmethod"])
def test_async_function(cluster, mode, func):
    assert_same(call(mode, "worker1", func, ("worker2", X, Y)), X + Y)


@pytest.mark.parametrize("mode", MODES)
def test_async_classmethod(cluster, mode):
    assert_same(call(mode, "worker1", async_fns.AsyncMath.mul, ("worker2", X, Y)), X * Y)


@pytest.mark.parametrize("mode", MODES)
def test_async_function_with_then(cluster, mode):
    assert_same(call(mode, "worker1", async_fns.async_add_then_scale, ("worker2", X, Y, 3)), (X + Y) * 3)


@pytest.mark.parametrize("mode", MODES)
def test_async_torchscript_function(cluster, mode):
    for _ in range(3):
        assert_same(call(mode, "worker1", async_fns.script_async_add, ("worker2", X, Y)), X + Y)


def test_async_chain_across_workers(cluster):
    assert_same(rpc.rpc_sync("worker1", async_fns.async_chain, (["worker2", "worker0", "worker1"], X)), X + 3)


def test_async_method_through_a_proxy(cluster):
    rref = rpc.remote("worker1", async_fns.Batch, (2,))
    futures = [rref.rpc_async().add(5), rref.rpc_async().add(7)]
    assert [f.wait() for f in futures] == [12, 12]


def test_callee_holds_no_thread_while_waiting(cluster):
    # worker1 has 4 pool threads; 64 callers wait together until the last
    # one has arrived.
    rpc.rpc_sync("worker1", async_fns.reset_batch, (64,))
    futures = [rpc.rpc_async("worker1", async_fns.add_to_batch, (i,), timeout=20) for i in range(64)]
    assert [f.wait() for f in futures] == [sum(range(64))] * 64


def test_concurrent_calls_waiting_on_nested_rpcs(cluster):
    def body(index):
        for _ in range(8):
            assert rpc.rpc_sync("worker1", async_fns.async_add, ("worker2", index, 1)) == index + 1

    run_in_threads(body, 8)


def test_not_returning_a_future(cluster):
    with pytest.raises(TypeError) as excinfo:
        rpc.rpc_sync("worker1", async_fns.not_a_future, (3,))
    assert ("not_a_future is marked @async_execution and must return a torch.futures.Future, but returned int"
            in remote_message(excinfo))


def test_error_raised_before_returning(cluster):
    for mode in MODES:
        with pytest.raises(ValueError, match="raised early"):
            call(mode, "worker1", async_fns.raises_first, ("raised early",))


def test_error_of_the_returned_future(cluster):
    for mode in MODES:
        with pytest.raises(ValueError) as excinfo:
            call(mode, "worker1", async_fns.nested_failure, ("worker2", "nested failure"))
        assert "nested failure" in remote_message(excinfo)
        assert "(ValueError raised on worker 'worker2')" in remote_message(excinfo)


def test_local_call_returns_the_future(cluster):
    future = async_fns.delayed(4, 0.01)
    assert isinstance(future, torch.futures.Future)
    assert future.wait() == 4
    assert rpc.rpc_sync("worker1", async_fns.delayed, (4, 0.01)) == 4
