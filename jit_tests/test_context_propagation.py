"""The current context follows scripted code: into forked tasks (nested too,
many at once), across the thread switch after wait(), into scripted
functions run on other workers, and never into places it should not reach."""

import threading

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from jit_tests import script_fns
from jit_tests.graphs import RUNS

T = torch.ones(2)


def test_context_id_inside_fork_and_nested_fork():
    for _ in range(RUNS):
        assert script_fns.context_id_in_fork(T) == -1
        with dist_autograd.context() as context_id:
            assert script_fns.context_id_in_fork(T) == context_id
            assert script_fns.context_id_in_nested_fork(T) == context_id
        assert script_fns.context_id_in_nested_fork(T) == -1


def test_task_forked_by_script_and_waited_from_python_sees_context():
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            assert script_fns.start_current_context_id(T).wait() == context_id


@pytest.mark.parametrize("fn", [script_fns.context_id_after_wait, script_fns.forked_context_id_after_wait],
                         ids=["direct", "forked"])
def test_context_id_after_wait(cluster, fn):
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            assert fn("worker1") == (context_id, context_id)


@pytest.mark.parametrize("fn", [script_fns.fork_add, script_fns.nested_fork_add], ids=["fork", "nested-fork"])
def test_forked_rpc_recorded_in_context(cluster, fn):
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            t1 = torch.tensor([1.0, 2.0], requires_grad=True)
            t2 = torch.tensor([3.0, 4.0], requires_grad=True)
            res = fn(t1 * 3, t2, "worker1")
            dist_autograd.backward(context_id, [(res * res).sum()])
            grads = dist_autograd.get_gradients(context_id)
            # d/dt1 sum((3 t1 + t2)^2) = 6 (3 t1 + t2); d/dt2 = 2 (3 t1 + t2)
            assert torch.equal(grads[t1], 6 * (3 * t1.detach() + t2.detach()))
            assert torch.equal(grads[t2], 2 * (3 * t1.detach() + t2.detach()))


def test_many_forks_in_flight(cluster):
    dsts = ["worker1", "worker2", "worker0"] * 4
    with dist_autograd.context() as context_id:
        t1 = torch.tensor([1.0, -1.0], requires_grad=True)
        t2 = torch.tensor([0.5, 2.0], requires_grad=True)
        total = script_fns.many_forks_add(t1, t2, dsts)
        assert torch.equal(total, len(dsts) * (t1.detach() + t2.detach()))
        dist_autograd.backward(context_id, [total.sum()])
        grads = dist_autograd.get_gradients(context_id)
        assert torch.equal(grads[t1], torch.full((2,), float(len(dsts))))
        assert torch.equal(grads[t2], torch.full((2,), float(len(dsts))))


def test_threads_with_own_contexts_call_fork_add(cluster):
    errors = []

    def train(index):
        try:
            for step in range(10):
                with dist_autograd.context() as context_id:
                    t1 = torch.full((3,), float(index), requires_grad=True)
                    t2 = torch.full((3,), float(step), requires_grad=True)
                    res = script_fns.fork_add(t1, t2, f"worker{1 + (index + step) % 2}")
                    dist_autograd.backward(context_id, [(res * t1).sum()])
                    grads = dist_autograd.get_gradients(context_id)
                    # d/dt1 sum((t1 + t2) t1) = 2 t1 + t2; d/dt2 = t1
                    assert torch.equal(grads[t1], torch.full((3,), 2.0 * index + step))
                    assert torch.equal(grads[t2], torch.full((3,), float(index)))
                    assert script_fns.context_id_in_fork(t1) == context_id
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append((index, error))

    threads = [threading.Thread(target=train, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_remote_scripted_function_forks_and_calls_third_worker(cluster):
    # worker0 runs fork_add on worker1, whose forked task calls worker2: the
    # whole chain is recorded in worker0's context.
    for _ in range(RUNS):
        with dist_autograd.context() as context_id:
            t1 = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
            t2 = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
            res = rpc.rpc_sync("worker1", script_fns.fork_add, args=(t1, t2 * 2, "worker2"))
            assert torch.equal(res, t1.detach() + 2 * t2.detach())
            dist_autograd.backward(context_id, [res.sum()])
            grads = dist_autograd.get_gradients(context_id)
            assert torch.equal(grads[t1], torch.ones(3))
            assert torch.equal(grads[t2], torch.full((3,), 2.0))


def test_plain_thread_does_not_inherit_context():
    seen = []
    with dist_autograd.context():
        thread = threading.Thread(target=lambda: seen.append(dist_autograd.current_context_id()))
        thread.start()
        thread.join()
    assert seen == [-1]


def test_context_not_visible_after_release():
    with dist_autograd.context():
        pass
    assert dist_autograd.current_context_id() == -1
    assert script_fns.context_id_in_fork(T) == -1
    # A task forked afterwards (on a pool thread that ran tasks of the
    # context before) does not see it either.
    assert script_fns.start_current_context_id(T).wait() == -1


def test_forked_task_running_when_context_is_released(cluster):
    with dist_autograd.context() as context_id:
        t = torch.ones(2, requires_grad=True)
        fut = script_fns.start_delayed_remote_add(t, t, "worker1", 0.5)
    with pytest.raises(RuntimeError, match=f"context {context_id} current on this thread has already been released"):
        fut.wait()
    # The workers are unaffected.
    assert torch.equal(rpc.rpc_sync("worker1", torch.add, args=(T, T)), 2 * T)
