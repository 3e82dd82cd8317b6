"""RPCs whose results the roots do not use, in a distributed backward pass:
they neither block the pass nor take gradients away from what the roots do
use (each worker declares the messages the pass cannot reach, and workers no
message reached are asked to join). Also: AccumulateGrad post-hooks, and a
slow backward function that must not hold up other calls to its worker."""

import threading
import time

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import check_against_reference


def leaves():
    return [torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]], requires_grad=True),
            torch.tensor([[0.5, 1.5, -2.0], [-1.0, 2.0, 0.75]], requires_grad=True)]


def dropped_result(call, x, y):
    call("worker1", torch.add, x, y)  # dropped: its graph is freed at once
    return [call("worker1", torch.mul, x, y).sum()]


def unused_result_kept_alive(call, x, y):
    kept = call("worker2", torch.sin, x)
    loss = call("worker1", torch.mul, x, y).sum()
    del kept
    return [loss]


def result_that_needs_no_grad(call, x, y):
    # worker2 receives x (which requires grad) but returns a tensor that does
    # not: no message of the pass ever reaches worker2.
    call("worker2", torch.ones_like, x)
    return [call("worker1", torch.mul, x, y).sum()]


def unused_call_nested_in_a_used_one(call, x, y):
    return [call("worker1", remote_fns.with_unused_call, call, "worker2", x).sum() + y.sum()]


def leaf_used_only_by_an_unused_call(call, x, y):
    call("worker2", torch.mul, y, y)
    return [call("worker1", torch.mul, x, x).sum()]


def several_unused_calls_around_used_ones(call, x, y):
    a = call("worker1", torch.mul, x, y)
    call("worker2", torch.add, a, y)
    b = call("worker2", torch.mul, a, x)
    call("worker1", remote_fns.with_unused_call, call, "worker2", b)
    return [(b * y).sum()]


@pytest.mark.parametrize("forward", [
    dropped_result, unused_result_kept_alive, result_that_needs_no_grad,
    unused_call_nested_in_a_used_one, leaf_used_only_by_an_unused_call,
    several_unused_calls_around_used_ones,
], ids=lambda f: f.__name__)
def test_unused_results_leave_the_gradients_of_the_roots_exact(cluster, forward):
    local, _ = check_against_reference(lambda call, x, y: forward(call, x, y), leaves)
    if forward is leaf_used_only_by_an_unused_call:
        assert local[1] is None  # as in local autograd: y got no gradient


def test_unused_results_with_retain_graph_in_two_passes(cluster):
    x, y = leaves()
    with dist_autograd.context() as context_id:
        loss = unused_result_kept_alive(remote_fns.rpc_call, x, y)
        dist_autograd.backward(context_id, loss, retain_graph=True)
        dist_autograd.backward(context_id, loss)
        grads = dist_autograd.get_gradients(context_id)
    assert torch.equal(grads[x], 2 * y.detach())
    assert torch.equal(grads[y], 2 * x.detach())


def test_accumulate_grad_post_hooks_run_with_the_gradient(cluster):
    x, y = leaves()
    seen = []
    accumulate = (x * 1).grad_fn.next_functions[0][0]
    handle = accumulate.register_hook(lambda grad_inputs, grad_outputs: seen.append((grad_inputs, grad_outputs)))
    try:
        with dist_autograd.context() as context_id:
            loss = rpc.rpc_sync("worker1", torch.mul, (x, y)).sum()
            dist_autograd.backward(context_id, [loss])
            grads = dist_autograd.get_gradients(context_id)
    finally:
        handle.remove()
    assert len(seen) == 1
    grad_inputs, grad_outputs = seen[0]
    assert grad_inputs == ()
    assert len(grad_outputs) == 1 and torch.equal(grad_outputs[0], y.detach())
    assert torch.equal(grads[x], y.detach())
    assert x.grad is None


def test_a_slow_backward_function_does_not_hold_up_other_calls_to_its_worker(cluster):
    x = torch.ones(2, 2, requires_grad=True)
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync("worker1", remote_fns.slow_in_backward, (x, 2.0)).sum()
        outcome = {}
        backward = threading.Thread(
            target=lambda: outcome.setdefault("done", dist_autograd.backward(context_id, [loss])))
        backward.start()
        time.sleep(0.3)  # the gradient message has reached worker1 by now
        start = time.monotonic()
        result = rpc.rpc_sync("worker1", torch.add, (torch.ones(2), torch.ones(2)), timeout=1.0)
        elapsed = time.monotonic() - start
        assert backward.is_alive(), "the backward function was not slow"
        backward.join(10)
        assert "done" in outcome
        assert torch.equal(dist_autograd.get_gradients(context_id)[x], torch.full((2, 2), 2.0))
    assert torch.equal(result, torch.full((2,), 2.0))
    assert elapsed < 1.0
