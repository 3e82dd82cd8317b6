"""Tensor hooks take part in a distributed backward pass as in a local one:
on leaves and on intermediates, on this worker and on others, they run once
with the summed gradient and their result replaces it."""

import pytest
import torch

from tests import remote_fns
from tests.autograd_checks import (
    assert_gradients, distributed_gradients, reference_gradients,
)


def doubling(seen):
    """A hook that records the gradient it gets in seen and doubles it."""
    def hook(grad):
        seen.append(grad.clone())
        return grad * 2
    return hook


def hook_on_leaf(call, seen, a, b):
    a.register_hook(doubling(seen))
    return [(call("worker1", torch.mul, a, b) + call("worker2", torch.sin, a)).sum()]


def hook_on_intermediate_sent_away(call, seen, a, b):
    y = a * 3
    y.register_hook(doubling(seen))
    return [call("worker1", torch.mul, y, b).sum()]


def hook_on_rpc_result(call, seen, a, b):
    r = call("worker2", torch.mul, a, b)
    r.register_hook(doubling(seen))
    return [(r * a).sum()]


def two_hooks_in_a_row(call, seen, a, b):
    r = call("worker1", torch.exp, a)
    r.register_hook(doubling(seen))
    r.register_hook(doubling(seen))
    return [(r * b).sum()]


def hook_on_intermediate_on_worker1(call, seen, a, b):
    return [call("worker1", remote_fns.double_grad_of_intermediate, a).sum() + b.sum()]


def hook_on_intermediate_of_a_nested_call(call, seen, a, b):
    return [call("worker2", remote_fns.via, call, "worker2", "worker1", a, b).sum()
            + call("worker0", remote_fns.double_grad_of_intermediate, b).sum()]


# (forward, how many times its hooks on worker0 run in one backward, whether
# the gradients are compared exactly). The hooks on other workers are defined
# in remote_fns and run by the reference too: had they not run, the gradients
# would differ from it.
CASES = [
    pytest.param(hook_on_leaf, 1, True, id="on-leaf"),
    pytest.param(hook_on_intermediate_sent_away, 1, True, id="on-intermediate-sent-away"),
    pytest.param(hook_on_rpc_result, 1, True, id="on-rpc-result"),
    pytest.param(two_hooks_in_a_row, 2, True, id="two-hooks-in-a-row"),
    pytest.param(hook_on_intermediate_on_worker1, 0, True, id="on-intermediate-on-worker1"),
    # b gets three gradients, maybe added in another order than locally.
    pytest.param(hook_on_intermediate_of_a_nested_call, 0, False, id="on-intermediate-of-a-self-rpc"),
]


def leaves():
    return [torch.linspace(-1, 2, 6, requires_grad=True), torch.linspace(3, 0.5, 6, requires_grad=True)]


@pytest.mark.parametrize("forward, runs, exact", CASES)
def test_hooks_run_and_modify_gradients(cluster, forward, runs, exact):
    seen, expected_seen = [], []
    local, _ = distributed_gradients(lambda call, a, b: forward(call, seen, a, b), leaves())
    expected, _ = reference_gradients(lambda call, a, b: forward(call, expected_seen, a, b), leaves())
    assert len(expected_seen) == runs
    assert len(seen) == runs, f"the hooks ran {len(seen)} times, expected {runs}"
    assert_gradients(seen, expected_seen)
    assert_gradients(local, expected, exact)



def test_hook_on_a_leaf_of_another_worker(cluster):
    def forward(call, x):
        return [(call("worker1", remote_fns.times_param, x, "hooked") * x).sum()]

    def x_leaf():
        return [torch.tensor([0.5, -1.5, 2.0], requires_grad=True)]

    remote_leaves = [("worker1", "hooked")]
    unhooked = reference_gradients(forward, x_leaf(), remote_leaves)[1]
    remote_fns.rpc_call("worker1", remote_fns.hook_param, "hooked")
    remote_fns.hook_param("hooked")  # for the reference, on this worker's copy
    try:
        local, remote = distributed_gradients(forward, x_leaf(), remote_leaves)
        expected_local, expected_remote = reference_gradients(forward, x_leaf(), remote_leaves)
    finally:
        remote_fns.rpc_call("worker1", remote_fns.unhook_params)
        remote_fns.unhook_params()
    assert_gradients(local, expected_local)
    assert_gradients(remote, expected_remote)
    assert_gradients(remote, [2 * unhooked[0]])
