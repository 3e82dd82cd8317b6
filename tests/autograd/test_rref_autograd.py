"""RRefs inside distributed autograd contexts: to_here(), proxies and remote()
record their send/recv like any RPC, so gradients reach tensors that live
on the owner."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import rref_fns
from tests.checks import assert_same

WORLD_SIZE = 3


def test_to_here_carries_gradients_to_the_owner(cluster):
    rref = rpc.remote("worker1", rref_fns.param, ([1.0, 2.0],))
    with dist_autograd.context() as context_id:
        x = rref.to_here()
        assert x.requires_grad
        dist_autograd.backward(context_id, [(x * 3).sum()])
        assert_same(rpc.rpc_sync("worker1", rref_fns.grad_of, (context_id, rref)), torch.full((2,), 3.0))
    assert rpc.rpc_sync("worker1", rref_fns.local_value, (rref,)).grad is None


def test_remote_then_to_here_round_trip(cluster):
    t = torch.tensor([1.0, -2.0], requires_grad=True)
    with dist_autograd.context() as context_id:
        y_rref = rpc.remote("worker1", torch.mul, (t, 2.5))
        y = y_rref.to_here()
        dist_autograd.backward(context_id, [(y * y).sum()])
        assert_same(dist_autograd.get_gradients(context_id)[t], 2 * (t.detach() * 2.5) * 2.5)


@pytest.mark.parametrize("proxy", ["rpc_sync", "rpc_async", "remote"])
def test_proxy_forward_gives_gradients_to_the_module(cluster, proxy):
    module = rpc.remote("worker1", rref_fns.Scale, ([2.0, 3.0], [0.5, 0.5]))
    x = torch.tensor([1.0, 4.0], requires_grad=True)
    with dist_autograd.context() as context_id:
        if proxy == "rpc_sync":
            y = module.rpc_sync().forward(x)
        elif proxy == "rpc_async":
            y = module.rpc_async().forward(x).wait()
        else:
            y = module.remote().forward(x).to_here()
        dist_autograd.backward(context_id, [y.sum()])
        grads = rpc.rpc_sync("worker1", rref_fns.parameter_grads, (context_id, module))
        assert_same(grads, {"w": torch.tensor([1.0, 4.0]), "b": torch.ones(2)})
        assert_same(dist_autograd.get_gradients(context_id)[x], torch.tensor([2.0, 3.0]))


def test_rref_forwarded_to_a_third_worker_in_a_context(cluster):
    # The pipeline shape: worker1 makes y, worker2 fetches it and goes on.
    module = rpc.remote("worker1", rref_fns.Scale, ([2.0, 3.0], [0.0, 1.0]))
    x = torch.tensor([1.0, 2.0])
    with dist_autograd.context() as context_id:
        y_rref = module.remote().forward(x)
        z = rpc.rpc_sync("worker2", rref_fns.scaled_value, (y_rref, 10.0))
        dist_autograd.backward(context_id, [z.sum()])
        grads = rpc.rpc_sync("worker1", rref_fns.parameter_grads, (context_id, module))
        assert_same(grads, {"w": x * 10, "b": torch.full((2,), 10.0)})


def test_rref_backward_on_a_user(cluster):
    rref = rpc.remote("worker1", rref_fns.param, (3.0,))
    with dist_autograd.context() as context_id:
        loss_rref = rpc.remote("worker1", torch.mul, (rref.to_here(), 4.0))
        loss_rref.backward(context_id)
        assert_same(rpc.rpc_sync("worker1", rref_fns.grad_of, (context_id, rref)), torch.tensor(4.0))
    with pytest.raises(RuntimeError, match="backward\\(\\) needs the dist_autograd_ctx_id"):
        rref.backward()


def test_rref_backward_on_the_owner(cluster):
    leaf = torch.tensor(2.0, requires_grad=True)
    rref = rpc.RRef(leaf * leaf)
    rref.backward()
    assert_same(leaf.grad, torch.tensor(4.0))
    with dist_autograd.context() as context_id:
        other = torch.tensor(3.0, requires_grad=True)
        owned = rpc.RRef(other * 5)
        owned.backward(context_id)
        assert_same(dist_autograd.get_gradients(context_id)[other], torch.tensor(5.0))
    with pytest.raises(RuntimeError, match="needs the value to be a tensor, got int"):
        rpc.RRef(3).backward()
