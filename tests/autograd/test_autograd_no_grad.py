"""An RPC made under torch.no_grad() inside a context records nothing: no
send or recv function on either side, a result that does not require grad,
and no trace in the callee's distributed autograd state."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.autograd_checks import in_fresh_thread, num_contexts

DESTINATIONS = ["worker1", "worker2", "worker0"]
FUNCS = [
    pytest.param(torch.add, id="builtin"),
    pytest.param(script_fns.local_add, id="script"),
    pytest.param(remote_fns.add, id="python"),
]


def leaves():
    return torch.linspace(-1, 1, 4, requires_grad=True), torch.linspace(3, 1, 4, requires_grad=True)


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func", FUNCS)
def test_rpc_under_no_grad_records_nothing(cluster, func, dst):
    a, b = leaves()
    with dist_autograd.context() as context_id:
        with torch.no_grad():
            result = rpc.rpc_sync(dst, func, (a, b))
            assert rpc.rpc_sync(dst, remote_fns.requires_grad_of, (a, b)) == [False, False]
        assert torch.equal(result, a.detach() + b.detach())
        assert not result.requires_grad and result.grad_fn is None
        with pytest.raises(ValueError, match="does not require grad"):
            dist_autograd.backward(context_id, [result.sum()])
        # No send function was recorded here: a pass from a local root does
        # not wait for gradients to come back through the RPC.
        in_fresh_thread(dist_autograd.backward, context_id, [(a * b).sum()], timeout=10)
        grads = dist_autograd.get_gradients(context_id)
        assert len(grads) == 2
        assert torch.equal(grads[a], b.detach()) and torch.equal(grads[b], a.detach())


@pytest.mark.parametrize("dst", ["worker1", "worker2"])
def test_rpc_under_no_grad_leaves_no_trace_on_the_callee(cluster, dst):
    a, b = leaves()
    before = num_contexts()
    with dist_autograd.context():
        with torch.no_grad():
            rpc.rpc_sync(dst, torch.add, (a, b))
        # Asked from another thread, so that asking does not reach dst in this context.
        assert num_contexts()[dst] == before[dst], \
            f"the callee {dst} holds a distributed autograd context for an RPC made under torch.no_grad()"


def test_grad_mode_is_back_after_the_block(cluster):
    a, b = leaves()
    with dist_autograd.context() as context_id:
        with torch.no_grad():
            rpc.rpc_sync("worker1", torch.add, (a, b))
        loss = rpc.rpc_sync("worker1", torch.mul, (a, b)).sum()
        assert loss.requires_grad
        dist_autograd.backward(context_id, [loss])
        grads = dist_autograd.get_gradients(context_id)
        assert torch.equal(grads[a], b.detach()) and torch.equal(grads[b], a.detach())
