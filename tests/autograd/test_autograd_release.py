"""Leaving `with context()`, normally or by an exception, releases the
context on every worker that took part, also those reached only through
nested calls, within a second; a released id is unknown everywhere."""

import contextlib

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import num_contexts, wait_for_contexts

# The route the forward pass takes from worker0 (remote_fns.chain).
ROUTES = [
    [],
    ["worker1"],
    ["worker0"],
    ["worker1", "worker2"],
    ["worker2", "worker0", "worker1"],
]
EXITS = ["normally", "by-exception", "by-a-remote-error"]


def forward(route, t):
    if not route:
        return remote_fns.step(t)
    return rpc.rpc_sync(route[0], remote_fns.chain, (remote_fns.rpc_call, route[1:], t))


@pytest.mark.parametrize("run_backward", [False, True], ids=["forward-only", "with-backward"])
@pytest.mark.parametrize("how", EXITS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda route: "-".join(["worker0", *route]))
def test_leaving_the_block_releases_everywhere(cluster, route, how, run_backward):
    before = num_contexts()
    took_part = {"worker0", *route}
    t = torch.linspace(-1, 1, 3, requires_grad=True)
    with pytest.raises(Exception) if how != "normally" else contextlib.nullcontext() as excinfo:
        with dist_autograd.context() as context_id:
            out = forward(route, t)
            assert num_contexts() == {w: n + (w in took_part) for w, n in before.items()}
            if run_backward:
                dist_autograd.backward(context_id, [out.sum()])
                assert t in dist_autograd.get_gradients(context_id)
            if how == "by-exception":
                raise remote_fns.CustomError("leaving")
            if how == "by-a-remote-error":
                rpc.rpc_sync("worker1", remote_fns.raise_value_error, ("remote trouble",))
    if how == "by-exception":
        assert type(excinfo.value) is remote_fns.CustomError
    elif how == "by-a-remote-error":
        assert type(excinfo.value) is ValueError
    wait_for_contexts(before)
    for worker in took_part:
        with pytest.raises(ValueError, match=f"context {context_id} is not known"):
            rpc.rpc_sync(worker, dist_autograd.get_gradients, (context_id,))


def test_released_id_is_unknown_here(cluster):
    t = torch.ones(2, requires_grad=True)
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync("worker1", torch.mul, (t, 2)).sum()
    for call in [lambda: dist_autograd.get_gradients(context_id),
                 lambda: dist_autograd.backward(context_id, [loss])]:
        with pytest.raises(ValueError, match=f"context {context_id} is not known"):
            call()


def test_many_contexts_reaching_every_worker(cluster):
    before = num_contexts()
    for i in range(50):
        with dist_autograd.context() as context_id:
            t = torch.full((2,), float(i), requires_grad=True)
            out = forward(["worker1", "worker2", "worker0"], t)
            dist_autograd.backward(context_id, [out.sum()])
    wait_for_contexts(before)
