"""retain_graph: with True the graph can be run again and gradients
accumulate in the context; without it a second backward pass fails at once,
with an error that says to use retain_graph=True."""

import pytest
import torch

import distgrad.autograd as dist_autograd
from tests import remote_fns
from tests.autograd_checks import (
    assert_gradients, check_against_reference, in_fresh_thread,
    reference_gradients,
)


def rpc_only(call, a, b):
    return [call("worker1", torch.add, a, b).sum()]


def saved_tensors_here(call, a, b):
    return [(call("worker1", torch.add, a, b) * a).sum()]


def saved_tensors_on_worker1(call, a, b):
    return [call("worker1", remote_fns.square, a).sum() + b.sum()]


def chain_through_every_worker(call, a, b):
    return [call("worker1", remote_fns.chain, call, ["worker2", "worker0"], a * b).sum()]


def local_only(call, a, b):
    return [(a * b).sum()]


GRAPHS = [
    pytest.param(rpc_only, id="rpc-only"),
    pytest.param(saved_tensors_here, id="saved-tensors-here"),
    pytest.param(saved_tensors_on_worker1, id="saved-tensors-on-worker1"),
    pytest.param(chain_through_every_worker, id="chain-through-every-worker"),
    pytest.param(local_only, id="local-only"),
]


def leaves():
    return [torch.linspace(-1, 1, 5, requires_grad=True), torch.linspace(2, 0, 5, requires_grad=True)]


def held_gradients(context_id, leaves):
    held = dist_autograd.get_gradients(context_id)
    return [held.get(t) for t in leaves]


@pytest.mark.parametrize("forward", GRAPHS)
def test_retain_graph_accumulates_gradients(cluster, forward):
    once, _ = reference_gradients(forward, leaves())
    twice = [g + g for g in once]
    a, b = leaves()
    with dist_autograd.context() as context_id:
        roots = forward(remote_fns.rpc_call, a, b)
        dist_autograd.backward(context_id, roots, retain_graph=True)
        assert_gradients(held_gradients(context_id, [a, b]), once)
        dist_autograd.backward(context_id, roots, retain_graph=True)
        assert_gradients(held_gradients(context_id, [a, b]), twice)
        # The last pass may free the graph.
        dist_autograd.backward(context_id, roots)
        assert_gradients(held_gradients(context_id, [a, b]), [g + o for g, o in zip(twice, once)])
        with pytest.raises(RuntimeError, match="retain_graph=True"):
            in_fresh_thread(dist_autograd.backward, context_id, roots, timeout=10)


@pytest.mark.parametrize("forward", GRAPHS)
def test_second_backward_without_retain_graph_fails(cluster, forward):
    a, b = leaves()
    with dist_autograd.context() as context_id:
        roots = forward(remote_fns.rpc_call, a, b)
        dist_autograd.backward(context_id, roots)
        # Fails at once, also for the graph on other workers, and does not hang.
        with pytest.raises(RuntimeError, match="retain_graph=True"):
            in_fresh_thread(dist_autograd.backward, context_id, roots, timeout=10)
    # Every worker still works.
    check_against_reference(forward, leaves)
