"""Every kind of func an RPC runs takes part in distributed autograd: builtin
operators, TorchScript functions (as objects and by name) and Python
callables, on other workers and on this one."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.autograd_checks import check_against_reference

DESTINATIONS = ["worker1", "worker2", "worker0"]

# (func as given to rpc_sync, the same computation run locally)
ADD_FUNCS = [
    pytest.param(torch.add, torch.add, id="builtin"),
    pytest.param(script_fns.local_add, script_fns.local_add, id="script"),
    pytest.param("tests.script_fns.local_add", script_fns.local_add, id="script-by-name"),
    pytest.param(remote_fns.add, remote_fns.add, id="python"),
]
MUL_SIN_FUNCS = [
    pytest.param(torch.mul, lambda a, b: torch.mul(a, b), id="builtin"),
    pytest.param(script_fns.mul_sin, script_fns.mul_sin, id="script"),
    pytest.param("tests.script_fns.mul_sin", script_fns.mul_sin, id="script-by-name"),
    pytest.param(remote_fns.mul_sin, remote_fns.mul_sin, id="python"),
]
# TorchScript functions are optimized after their first runs.
RUNS = 3


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func, _", ADD_FUNCS)
def test_add(cluster, dst, func, _):
    weights = torch.arange(6.0).reshape(2, 3)
    for run in range(RUNS):
        t1 = torch.rand(2, 3, requires_grad=True)
        t2 = torch.rand(2, 3, requires_grad=True)
        with dist_autograd.context() as context_id:
            loss = (rpc.rpc_sync(dst, func, (t1, t2)) * weights).sum()
            dist_autograd.backward(context_id, [loss])
            grads = dist_autograd.get_gradients(context_id)
            assert len(grads) == 2, run
            assert torch.equal(grads[t1], weights), run
            assert torch.equal(grads[t2], weights), run


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func, local_func", MUL_SIN_FUNCS)
def test_backward_through_tensors_saved_on_the_callee(cluster, dst, func, local_func):
    def forward(call, a, b):
        out = rpc.rpc_sync(dst, func, (a, b)) if call is remote_fns.rpc_call else local_func(a, b)
        return [(out * a).sum()]

    for _ in range(RUNS):
        check_against_reference(forward, lambda: [torch.linspace(-1, 2, 6, requires_grad=True),
                                                  torch.linspace(0.5, 3, 6, requires_grad=True)])
