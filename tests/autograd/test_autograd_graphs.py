"""Gradients of graphs of different shapes across workers, compared with the
same computation done locally with plain torch.autograd."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests.autograd_checks import check_against_reference

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dst", ["worker1", "worker2", "worker0"])
def test_single_rpc_gives_ones(cluster, dst):
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync(dst, torch.add, (t1, t2)).sum()
        dist_autograd.backward(context_id, [loss])
        grads = dist_autograd.get_gradients(context_id)
        assert len(grads) == 2
        assert torch.equal(grads[t1], torch.ones(3, 3))
        assert torch.equal(grads[t2], torch.ones(3, 3))
    assert t1.grad is None and t2.grad is None


# Each case: forward(call, *leaves) -> roots, the leaves' shapes, and whether
# the gradients are compared exactly (a leaf reached by more than two paths
# gets a sum the local engine may add in another order).
def single_rpc(call, a, b):
    return [call("worker1", torch.mul, a, b).sum()]


def multiple_roots(call, a, b):
    return [call("worker1", torch.mul, a, b).sum(), call("worker2", torch.add, a, a * b).sum(), (a * 3).sum()]


def same_tensor_twice_in_one_rpc(call, a, b):
    return [call("worker1", torch.mul, a, a).sum() + b.sum()]


def same_tensor_sent_twice(call, a, b):
    return [(call("worker1", torch.sin, a) * call("worker1", torch.mul, a, b)).sum()]


def same_tensor_to_two_workers(call, a, b):
    return [(call("worker1", torch.exp, a) + call("worker2", torch.mul, a, b)).sum()]


def diamond_meeting_here(call, a, b):
    left = call("worker1", torch.mul, a, b)
    right = call("worker2", torch.cos, a)
    return [(left * right).sum()]


def diamond_meeting_on_a_remote_worker(call, a, b):
    left = call("worker2", torch.sin, a)
    right = call("worker0", torch.mul, a, b)
    return [call("worker1", torch.mul, left, right).sum()]


def diamond_of_rpc_results(call, a, b):
    shared = call("worker1", torch.mul, a, b)
    return [(call("worker2", torch.exp, shared) * call("worker1", torch.neg, shared)).sum()]


def local_only(call, a, b):
    return [(a * b).sum()]


def root_is_a_leaf(call, a, b):
    return [b]


def leaf_unused_by_the_roots(call, a, b):
    return [call("worker1", torch.sin, a).sum()]


def mixed_precision(call, a, b):
    # a in float32, b in float64: each gradient keeps its leaf's dtype.
    return [call("worker1", torch.mul, a, b).sum() + call("worker2", torch.mul, a, a).sum()]


CASES = [
    pytest.param(single_rpc, [(3, 3), (3, 3)], True, id="single-rpc"),
    pytest.param(multiple_roots, [(2, 3), (2, 3)], False, id="multiple-roots"),
    pytest.param(same_tensor_twice_in_one_rpc, [(4,), (4,)], True, id="same-tensor-twice-in-one-rpc"),
    pytest.param(same_tensor_sent_twice, [(2, 2), (2, 2)], True, id="same-tensor-sent-twice"),
    pytest.param(same_tensor_to_two_workers, [(3,), (3,)], True, id="same-tensor-to-two-workers"),
    pytest.param(diamond_meeting_here, [(3, 2), (3, 2)], True, id="diamond-meeting-here"),
    pytest.param(diamond_meeting_on_a_remote_worker, [(5,), (5,)], True, id="diamond-meeting-on-worker1"),
    pytest.param(diamond_of_rpc_results, [(2, 3), (2, 3)], True, id="diamond-of-rpc-results"),
    pytest.param(local_only, [(3, 3), (3, 3)], True, id="local-only"),
    pytest.param(root_is_a_leaf, [(3,), ()], True, id="root-is-a-leaf"),
    pytest.param(leaf_unused_by_the_roots, [(3,), (3,)], True, id="leaf-unused"),
]


def make_leaves(shapes, dtypes, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype).requires_grad_()
            for shape, dtype in zip(shapes, dtypes)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("forward, shapes, exact", CASES)
def test_gradients_match_local_autograd(cluster, forward, shapes, exact, dtype):
    dtypes = [dtype] * len(shapes)
    for seed in range(2):
        check_against_reference(forward, lambda: make_leaves(shapes, dtypes, seed), exact=exact)


def test_float32_and_float64_leaves_together(cluster):
    local, _ = check_against_reference(
        mixed_precision, lambda: make_leaves([(3,), (3,)], [torch.float32, torch.float64], 0), exact=False)
    assert [g.dtype for g in local] == [torch.float32, torch.float64]



@pytest.mark.parametrize("dst", ["worker1", "worker0"])
def test_leaves_sharing_a_gradient_each_get_their_own(cluster, dst):
    # The backward of an add hands the same gradient tensor to both inputs.
    t1 = torch.zeros(4, requires_grad=True)
    t2 = torch.zeros(4, requires_grad=True)
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync(dst, torch.mul, (t1 + t2, 3.0)).sum()
        dist_autograd.backward(context_id, [loss])
        grads = dist_autograd.get_gradients(context_id)
        assert grads[t1].data_ptr() != grads[t2].data_ptr()
        grads[t1].add_(1.0)
        assert torch.equal(grads[t2], torch.full((4,), 3.0))
