"""What TorchScript compiles distgrad's Python names to, and that no distgrad
op is folded away or dropped once the profiling executor has optimized a
function (every run is checked)."""

import re

import expecttest
import pytest
import torch
from torch.testing import FileCheck

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from jit_tests import script_fns
from jit_tests.graphs import check_graph, run_checking_graph
from tests.checks import wait_for

T = torch.ones(2, 2)


def test_remote_add_graph_has_rpc_async_and_wait():
    FileCheck().check("dist_rpc::rpc_async").check("aten::wait").run(str(script_fns.remote_add.graph))


def test_fork_add_graph_forks_remote_add():
    FileCheck().check("prim::fork").check("aten::wait").run(str(script_fns.fork_add.graph))


def test_rpc_sync_compiles_to_dist_rpc_rpc_sync():
    FileCheck().check("dist_rpc::rpc_sync").check_not("dist_rpc::rpc_async").run(
        str(script_fns.rpc_sync_add.graph))


def test_dist_autograd_ops_in_graphs():
    check_graph(script_fns.dist_get_gradients.graph, ["dist_autograd::get_gradients"])
    check_graph(script_fns.dist_backward_script.graph, ["dist_autograd::dist_backward"])
    check_graph(script_fns.current_context_id.graph, ["dist_autograd::current_context_id"])


def test_rpc_async_signature_in_graph():
    # func and args are passed as given; the timeout default (-1) is explicit.
    FileCheck().check('prim::Constant[value="jit_tests.script_fns.local_add"]') \
        .check("prim::TupleConstruct").check("dist_rpc::rpc_async").run(str(script_fns.remote_add.graph))


@pytest.mark.parametrize("fn, args, ops", [
    pytest.param(script_fns.remote_add, (T, T, "worker1"), ["dist_rpc::rpc_async", "aten::wait"], id="remote_add"),
    pytest.param(script_fns.fork_add, (T, T, "worker1"), ["prim::fork"], id="fork_add"),
    pytest.param(script_fns.rpc_sync_add, ("worker1", T, T), ["dist_rpc::rpc_sync"], id="rpc_sync_add"),
    pytest.param(script_fns.rpc_by_name, ("worker1", "aten::add", T), ["dist_rpc::rpc_async"], id="builtin_by_name"),
])
def test_rpc_ops_survive_optimization(cluster, fn, args, ops):
    for result in run_checking_graph(fn, args, ops):
        assert torch.equal(result, 2 * T)


def test_rpc_whose_future_is_unused_still_runs(cluster):
    # The call is the op's effect: it must run even though its result is
    # never used. Inside a context it makes worker2 create that context.
    def contexts_on_worker2():
        return rpc.rpc_sync("worker2", dist_autograd.debug_info)["num_autograd_contexts"]

    before = contexts_on_worker2()
    for _ in range(3):
        with dist_autograd.context():
            script_fns.fire_and_forget("worker2", T)
            check_graph(torch.jit.last_executed_optimized_graph(), ["dist_rpc::rpc_async"])
            wait_for(lambda: contexts_on_worker2() == before + 1, 5.0, "worker2 to join the context")
        wait_for(lambda: contexts_on_worker2() == before, 1.0, "worker2 to release the context")


def test_current_context_id_is_not_constant_folded():
    # Constant inputs (none here) must not let TorchScript fold the op: its
    # result depends on the calling thread.
    for _ in range(3):
        assert script_fns.current_context_id(T) == -1
        check_graph(torch.jit.last_executed_optimized_graph(), ["dist_autograd::current_context_id"])
        with dist_autograd.context() as context_id:
            assert script_fns.current_context_id(T) == context_id
            check_graph(torch.jit.last_executed_optimized_graph(), ["dist_autograd::current_context_id"])


def test_get_gradients_with_constant_id_is_not_folded():
    @torch.jit.script
    def gradients_of_context_42():
        return dist_autograd.get_gradients(42)

    # Every run reaches the op: a folded or dropped op would not raise.
    for _ in range(3):
        with pytest.raises(RuntimeError, match="context 42 is not known"):
            gradients_of_context_42()
    check_graph(gradients_of_context_42.graph, ["dist_autograd::get_gradients"])


def test_dist_backward_result_unused_is_kept(cluster):
    for _ in range(3):
        with dist_autograd.context() as context_id:
            t = torch.ones(2, requires_grad=True)
            script_fns.dist_backward_script(context_id, (t * 3).sum())
            check_graph(torch.jit.last_executed_optimized_graph(), ["dist_autograd::dist_backward"])
            assert torch.equal(dist_autograd.get_gradients(context_id)[t], torch.full((2,), 3.0))


def _graph_text(fn):
    # Without the source locations, which depend on where the checkout is.
    return re.sub(r" # \S+", "", str(fn.graph))


class TestGraphText(expecttest.TestCase):
    def test_remote_add_graph(self):
        self.assertExpectedInline(_graph_text(script_fns.remote_add), """\
graph(%t1.1 : Tensor,
      %t2.1 : Tensor,
      %dst.1 : str):
  %8 : float = prim::Constant[value=-1.]()
  %4 : str = prim::Constant[value="jit_tests.script_fns.local_add"]()
  %7 : (Tensor, Tensor) = prim::TupleConstruct(%t1.1, %t2.1)
  %9 : Future[Any] = dist_rpc::rpc_async(%dst.1, %4, %7, %8)
  %10 : Any = aten::wait(%9)
  return (%10)
""")

    def test_dist_backward_graph(self):
        self.assertExpectedInline(_graph_text(script_fns.dist_backward_script), """\
graph(%context_id.1 : int,
      %loss.1 : Tensor):
  %8 : NoneType = prim::Constant()
  %6 : float = prim::Constant[value=-1.]()
  %5 : bool = prim::Constant[value=0]()
  %4 : Tensor[] = prim::ListConstruct(%loss.1)
   = dist_autograd::dist_backward(%context_id.1, %4, %5, %6)
  return (%8)
""")
