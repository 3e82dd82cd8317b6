"""Errors raised from scripted code name what was wrong."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from jit_tests import script_fns

T = torch.ones(2)


@pytest.mark.parametrize("func, fragment", [
    ("jit_tests.script_fns.no_such_function", "unknown TorchScript function '__torch__.jit_tests.script_fns.no_such_function'"),
    ("no_such_module.fn", "unknown TorchScript function '__torch__.no_such_module.fn'"),
    ("aten::no_such_op", "unknown builtin operator 'aten::no_such_op'"),
])
def test_scripted_rpc_to_unknown_function(cluster, func, fragment):
    for _ in range(3):
        with pytest.raises(RuntimeError) as excinfo:
            script_fns.rpc_by_name("worker1", func, T)
        message = str(excinfo.value)
        assert fragment in message
        assert "raised on worker 'worker1'" in message
    # The worker keeps serving.
    assert torch.equal(script_fns.rpc_by_name("worker1", "aten::add", T), 2 * T)


def test_scripted_rpc_to_unknown_worker(cluster):
    for _ in range(3):
        with pytest.raises(RuntimeError, match="unknown worker 'worker9' \\(the workers are: worker0, worker1, worker2\\)"):
            script_fns.remote_add(T, T, "worker9")


def test_scripted_get_gradients_with_invalid_id():
    with dist_autograd.context() as context_id:
        pass
    for bad_id in (context_id, 12345):
        with pytest.raises(RuntimeError, match=f"context {bad_id} is not known on this worker"):
            script_fns.dist_get_gradients(bad_id)


def test_scripted_backward_with_invalid_id(cluster):
    t = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="context 777 is not known on this worker"):
        script_fns.dist_backward_script(777, (t * 2).sum())


def test_scripted_rpc_error_inside_fork_reaches_the_waiter(cluster):
    with pytest.raises(RuntimeError, match="unknown worker 'nobody'"):
        script_fns.fork_add(T, T, "nobody")
    assert torch.equal(rpc.rpc_sync("worker2", script_fns.fork_add, args=(T, T, "worker1")), 2 * T)
