"""Each kind of func rpc_sync runs: builtin operators, TorchScript functions
(as objects and by name) and Python callables, on another worker and on this
one (self-RPC)."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.checks import assert_same

# worker0 is this process: calling it is a self-RPC.
DESTINATIONS = ["worker1", "worker0"]

A = torch.arange(6, dtype=torch.float32).reshape(2, 3)
B = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.25, -4.0]])
M = torch.arange(12, dtype=torch.float32).reshape(3, 4)

BUILTIN_CASES = [
    pytest.param(torch.add, (A, B), {}, id="add"),
    pytest.param(torch.add, (A, B), {"alpha": 2}, id="add-alpha-kwarg"),
    pytest.param(torch.sub, (A, 1.5), {}, id="sub-scalar"),
    pytest.param(torch.matmul, (A, M), {}, id="matmul"),
    pytest.param(torch.max, (B,), {"dim": 0}, id="max-dim-returns-tuple"),
    pytest.param(torch.sort, (B,), {"dim": 1, "descending": True}, id="sort-kwargs-returns-tuple"),
    pytest.param(torch.cat, ([A, B],), {"dim": 1}, id="cat-tensor-list"),
    pytest.param(torch.sum, (M,), {}, id="sum-to-0-dim"),
]


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func, args, kwargs", BUILTIN_CASES)
def test_builtin_operator(cluster, dst, func, args, kwargs):
    # Operators returning several tensors (torch.max, torch.sort) give a plain tuple.
    assert_same(rpc.rpc_sync(dst, func, args, kwargs), func(*args, **kwargs))


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func", [script_fns.local_add, "tests.script_fns.local_add"], ids=["object", "by-name"])
def test_torchscript_function(cluster, dst, func):
    # Three calls each: the profiling executor optimizes after the first runs.
    for i in range(3):
        assert_same(rpc.rpc_sync(dst, func, (A, B + i)), A + B + i)


@pytest.mark.parametrize("dst", DESTINATIONS)
def test_torchscript_function_kwargs_and_defaults(cluster, dst):
    assert_same(rpc.rpc_sync(dst, script_fns.scale, (A,)), A * 2.0)
    assert_same(rpc.rpc_sync(dst, script_fns.scale, (A,), {"factor": -0.5}), A * -0.5)
    assert_same(rpc.rpc_sync(dst, script_fns.scale, (), {"t": B, "factor": 3.0}), B * 3.0)


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func", [script_fns.split_sum, "tests.script_fns.split_sum"], ids=["object", "by-name"])
def test_torchscript_function_returning_tuple(cluster, dst, func):
    assert_same(rpc.rpc_sync(dst, func, (M,)), (M.sum(), M.sum(dim=0)))


@pytest.mark.parametrize("dst", DESTINATIONS)
def test_python_callable_with_args_and_kwargs_returns_nested_structure(cluster, dst):
    result = rpc.rpc_sync(dst, remote_fns.combine, (A, B), {"scale": 3, "tag": "x"})
    assert_same(result, {
        "sum": A + 3 * B,
        "parts": [A, (B, "x")],
        "meta": {"scale": 3, "shapes": ((2, 3), (2, 3))},
        "where": dst,
    })


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("value", [None, 7, 2.5, "text", b"\x00bytes", [1, (2, {"k": None})]],
                         ids=["none", "int", "float", "str", "bytes", "nested"])
def test_python_callable_plain_values(cluster, dst, value):
    assert_same(rpc.rpc_sync(dst, remote_fns.identity, (value,)), value)


@pytest.mark.parametrize("dst", DESTINATIONS)
def test_python_callable_runs_on_the_destination(cluster, dst):
    assert rpc.rpc_sync(dst, remote_fns.whoami) == dst


@pytest.mark.parametrize("dst", DESTINATIONS)
def test_python_values_keep_requires_grad_and_parameters(cluster, dst):
    # Outside a distributed autograd context, as with torch's RPC: a result
    # that requires grad is a leaf that requires grad, and a module comes
    # back with Parameters.
    module = rpc.rpc_sync(dst, remote_fns.make_linear)
    assert [type(p) for p in module.parameters()] == [torch.nn.Parameter] * 2
    assert all(p.requires_grad for p in module.parameters())
    assert_same(module.weight.detach(), remote_fns.make_linear().weight.detach())
    leaf = rpc.rpc_sync(dst, remote_fns.leaf_requiring_grad)
    assert leaf.requires_grad and leaf.is_leaf and leaf.grad_fn is None
    echoed = rpc.rpc_sync(dst, remote_fns.identity, (torch.nn.Parameter(torch.ones(2)),))
    assert type(echoed) is torch.nn.Parameter and echoed.requires_grad
    plain = rpc.rpc_sync(dst, remote_fns.identity, (torch.ones(2),))
    assert type(plain) is torch.Tensor and not plain.requires_grad
