"""Leaves that live on other workers (remote_fns.PARAMS): their gradients
land in that worker's copy of the context, also when the leaf itself is
returned to the caller, and results the caller leaves unused contribute zeros."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import (
    assert_gradients, check_against_reference, distributed_gradients,
    reference_gradients,
)


def x_leaf():
    return [torch.tensor([[1.0, 2.0, -3.0], [0.5, -0.25, 4.0]], requires_grad=True)]


@pytest.mark.parametrize("owner", ["worker1", "worker2"])
def test_parameters_used_by_a_remote_function(cluster, owner):
    def forward(call, x):
        return [(call(owner, remote_fns.scale_and_shift, x) * x).sum()]

    check_against_reference(forward, x_leaf, remote_leaves=[(owner, "w"), (owner, "b")])
    # Only the owner took part: the other workers hold nothing for the parameters.
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, forward(remote_fns.rpc_call, *x_leaf()))
        for worker in ["worker0", "worker1", "worker2"]:
            held = rpc.rpc_sync(worker, remote_fns.param_gradient, (context_id, "w"))
            assert (held is not None) == (worker == owner), worker
    assert rpc.rpc_sync(owner, remote_fns.param_dot_grads) == {name: None for name in remote_fns.PARAMS}


def test_parameters_used_on_two_workers_hold_a_gradient_each(cluster):
    def forward(call, x):
        return [(call("worker1", remote_fns.scale_and_shift, x) * call("worker2", remote_fns.scale_and_shift, x)).sum()]

    remote_leaves = [("worker1", "w"), ("worker2", "w")]
    local, remote = distributed_gradients(forward, x_leaf(), remote_leaves)
    expected_local, expected_remote = reference_gradients(forward, x_leaf(), remote_leaves[:1])
    assert_gradients(local, expected_local)
    # Each worker holds the gradient of its own use of w; together, the whole.
    x = x_leaf()[0].detach()
    other_factor = x * remote_fns.PARAMS["w"].detach() + remote_fns.PARAMS["b"].detach()
    assert_gradients(remote, [x * other_factor, x * other_factor])
    assert_gradients([remote[0] + remote[1]], expected_remote)


def test_remote_leaf_returned_to_the_caller(cluster):
    def forward(call, x):
        b = call("worker1", remote_fns.get_param, "b")
        return [(b * x).sum() + (b * b).sum()]

    check_against_reference(forward, x_leaf, remote_leaves=[("worker1", "b")])
    with dist_autograd.context():
        b = rpc.rpc_sync("worker1", remote_fns.get_param, ("b",))
        assert b.requires_grad and b.grad_fn is not None, "the caller's copy is not a leaf"


def test_remote_leaf_returned_and_sent_on_to_another_worker(cluster):
    def forward(call, x):
        b = call("worker1", remote_fns.get_param, "b")
        return [call("worker2", torch.mul, b, x).sum()]

    check_against_reference(forward, x_leaf, remote_leaves=[("worker1", "b")])


@pytest.mark.parametrize("used", [[0], [1], [2], [3], [0, 3], [1, 2], [0, 1, 2, 3]],
                         ids=lambda used: "use-" + "-".join(map(str, used)))
def test_results_left_unused_contribute_zeros(cluster, used):
    def forward(call, x):
        results = call("worker1", remote_fns.several_outputs, x)
        return [sum((results[i] * (i + 1)).sum() for i in used)]

    remote_leaves = [("worker1", "w"), ("worker1", "b")]
    local, remote = distributed_gradients(forward, x_leaf(), remote_leaves)
    expected_local, expected_remote = reference_gradients(forward, x_leaf(), remote_leaves)
    # Every leaf behind the RPC receives a gradient: zeros for the unused results.
    zeros_for_none = [torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3)]
    expected = [e if e is not None else z for e, z in zip(expected_local + expected_remote, zeros_for_none)]
    assert_gradients(local + remote, expected, exact=False)
