"""Calls made from inside a call: a Python function that uses rpc_sync on
the worker running it, back to the caller and through every worker."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import remote_message


@pytest.mark.parametrize("route", [
    ["worker2", "worker0"],
    ["worker0"],
    ["worker1"],
    ["worker2", "worker1", "worker0", "worker2", "worker1"],
], ids=lambda route: "-".join(route))
def test_relay(cluster, route):
    result, path = rpc.rpc_sync("worker1", remote_fns.relay, (route, torch.zeros(2)))
    assert path == ["worker1", *route]
    assert torch.equal(result, torch.full((2,), float(len(route) + 1)))


def test_relay_from_self(cluster):
    result, path = rpc.rpc_sync("worker0", remote_fns.relay, (["worker1", "worker0"], torch.zeros(1)))
    assert path == ["worker0", "worker1", "worker0"]
    assert result.item() == 3.0


def test_nested_calls_from_several_callers_at_once(cluster):
    futures = [
        rpc.rpc_async(f"worker{1 + i % 2}", remote_fns.relay, (["worker0", f"worker{2 - i % 2}"], torch.full((1,), i)))
        for i in range(6)
    ]
    for i, (result, path) in enumerate(torch.futures.wait_all(futures)):
        assert path == [f"worker{1 + i % 2}", "worker0", f"worker{2 - i % 2}"]
        assert result.item() == i + 3


@pytest.mark.parametrize("func", [torch.add, "tests.script_fns.local_add"], ids=["builtin", "script-by-name"])
def test_nested_call_of_other_kinds(cluster, func):
    t = torch.arange(3.0)
    assert torch.equal(rpc.rpc_sync("worker1", remote_fns.call, ("worker2", func, (t, t))), t + t)
    assert torch.equal(rpc.rpc_sync("worker2", remote_fns.call, ("worker0", func, (t, t))), t + t)


def test_error_from_the_end_of_a_chain(cluster):
    with pytest.raises(ValueError) as excinfo:
        rpc.rpc_sync("worker1", remote_fns.call, ("worker2", remote_fns.raise_value_error, ("deep down",)))
    message = remote_message(excinfo)
    assert message.startswith("deep down\n")
    assert "(ValueError raised on worker 'worker2')" in message
    assert message.endswith("(ValueError raised on worker 'worker1')")
