"""The reference TorchScript scenarios of torch.distributed.autograd, with
distgrad: get_gradients and dist_backward called from scripted functions,
fork_add inside a context, and two RPCs separated by a thread switch."""

import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from jit_tests import script_fns
from jit_tests.graphs import RUNS, check_graph, run_checking_graph

ONES = torch.ones(3, 3)


def test_get_gradients_from_script(cluster):
    check_graph(script_fns.dist_get_gradients.graph, ["dist_autograd::get_gradients"])
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            t1 = torch.rand((3, 3), requires_grad=True)
            t2 = torch.rand((3, 3), requires_grad=True)
            dist_autograd.backward(context_id, [torch.add(t1, t2).sum()])
            grads = script_fns.dist_get_gradients(context_id)
            check_graph(torch.jit.last_executed_optimized_graph(), ["dist_autograd::get_gradients"])
            assert len(grads) == 2
            assert torch.equal(grads[t1], ONES)
            assert torch.equal(grads[t2], ONES)


def test_dist_backward_from_script_across_rpc(cluster):
    check_graph(script_fns.dist_backward_script.graph, ["dist_autograd::dist_backward"])
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            t1 = torch.rand(3, 3, requires_grad=True)
            t2 = torch.rand(3, 3, requires_grad=True)
            loss = rpc.rpc_sync("worker1", torch.add, args=(t1, t2)).sum()
            script_fns.dist_backward_script(context_id, loss)
            check_graph(torch.jit.last_executed_optimized_graph(), ["dist_autograd::dist_backward"])
            grads = dist_autograd.get_gradients(context_id)
            assert torch.equal(grads[t1], ONES)
            assert torch.equal(grads[t2], ONES)


def test_fork_add_within_context(cluster):
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            t1 = torch.rand((3, 3), requires_grad=True)
            t2 = torch.rand((3, 3), requires_grad=True)
            [res] = run_checking_graph(script_fns.fork_add, (t1, t2, "worker1"), ["prim::fork"], runs=1)
            assert torch.equal(res, t1 + t2)
            dist_autograd.backward(context_id, [res.sum()])
            grads = dist_autograd.get_gradients(context_id)
            assert len(grads) == 2
            assert torch.equal(grads[t1], ONES)
            assert torch.equal(grads[t2], ONES)


def _two_rpcs_case(fn):
    with dist_autograd.context() as context_id:
        t1 = torch.ones((2, 3), requires_grad=True)
        t2 = torch.ones((2, 3), requires_grad=True)
        loss0, loss1 = fn("worker1", t1, t2)
        assert loss0.item() == 12.0 and loss1.item() == 12.0
        dist_autograd.backward(context_id, [loss0, loss1])
        grads = dist_autograd.get_gradients(context_id)
        assert torch.equal(grads[t1], torch.full((2, 3), 2.0))
        assert torch.equal(grads[t2], torch.full((2, 3), 2.0))


def test_restore_context_after_switch_to_jit_thread(cluster):
    for _ in range(RUNS):
        _two_rpcs_case(script_fns.two_rpcs)


def test_restore_context_after_switch_in_forked_task(cluster):
    # In a forked task the first wait() suspends the function and its
    # continuation runs on whichever thread the launcher picks.
    for _ in range(RUNS):
        _two_rpcs_case(script_fns.forked_two_rpcs)
