"""RRefs in TorchScript: scripted functions take RRefs and call to_here(),
local_value(), owner_name(), is_owner(); rpc.remote() compiles to the
dist_rpc::remote operator and its RRef reaches Python as an rpc.RRef. Each
function runs at least 3 times (the profiling executor optimizes after the
first runs)."""

import pytest
import torch
from torch.testing import FileCheck

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from jit_tests import rref_script_fns as fns
from jit_tests.graphs import RUNS, run_checking_graph
from tests import rref_fns
from tests.checks import assert_same

T1 = torch.tensor([1.0, 2.0])
T2 = torch.tensor([0.5, -3.0])
RREF_TYPE = "__torch__.distgrad.rpc.rref.ScriptRRef"


def test_rref_argument_graph():
    FileCheck().check(f"%rref.1 : {RREF_TYPE}").check('prim::CallMethod[name="to_here"]') \
        .run(str(fns.rref_to_here.graph))


def test_remote_graph():
    FileCheck().check('prim::Constant[value="jit_tests.script_fns.local_add"]') \
        .check("dist_rpc::remote").check(f"{RREF_TYPE} = prim::CreateObject") \
        .run(str(fns.remote_add.inlined_graph))


@pytest.mark.parametrize("owner", ["worker1", "worker0"])
def test_to_here_and_owner_in_script(cluster, owner):
    rref = rpc.remote(owner, rref_fns.make_tensor, (4, 2))
    for value in run_checking_graph(fns.rref_to_here, (rref,), ["prim::CallMethod"]):
        assert_same(value, torch.full((2,), 4.0))
    for _ in range(RUNS):
        assert fns.rref_owner(rref) == (owner, owner == "worker0", True)


def test_local_value_in_script(cluster):
    rref = rpc.RRef(T1)
    for _ in range(RUNS):
        assert fns.rref_local_value(rref) is T1
    remote_rref = rpc.remote("worker1", rref_fns.make_tensor, (1, 1))
    # Errors raised inside TorchScript reach Python as RuntimeError.
    with pytest.raises(RuntimeError, match="is owned by worker 'worker1', not by this worker"):
        fns.rref_local_value(remote_rref)


@pytest.mark.parametrize("dst", ["worker1", "worker0"])
def test_scripted_remote_returns_an_rref_to_python(cluster, dst):
    for rref in run_checking_graph(fns.remote_add, (dst, T1, T2), ["dist_rpc::remote"]):
        assert isinstance(rref, rpc.RRef)
        assert rref.owner_name() == dst
        assert_same(rref.to_here(), T1 + T2)


def test_scripted_remote_and_to_here_in_a_fork(cluster):
    for _ in range(RUNS):
        assert_same(fns.fork_remote_add("worker1", T1, T2), T1 + T2)


def test_rref_passed_to_a_scripted_function_on_another_worker(cluster):
    rref = rpc.remote("worker1", rref_fns.make_tensor, (6, 2))
    # From Python, to a TorchScript function given as an object...
    assert_same(rpc.rpc_sync("worker2", fns.rref_to_here, (rref,)), torch.full((2,), 6.0))
    # ...and from TorchScript, by name, to a third worker.
    for _ in range(RUNS):
        assert_same(fns.fetch_elsewhere("worker2", rref), torch.full((2,), 6.0))


def test_gradients_through_scripted_remote_and_to_here(cluster):
    for _ in range(RUNS):
        t1 = T1.clone().requires_grad_()
        with dist_autograd.context() as context_id:
            value = fns.remote_add_to_here("worker1", t1, T2)
            dist_autograd.backward(context_id, [(value * value).sum()])
            assert_same(dist_autograd.get_gradients(context_id)[t1], 2 * (T1 + T2))
