"""Distributed autograd contexts: ids (the creating worker's rank in the top
bits), which context is current where, and nesting."""

import threading

import pytest
import torch

import distgrad
import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import in_fresh_thread
from tests.checks import run_in_threads


def test_is_available(cluster):
    assert dist_autograd.is_available() is True


def test_current_context_id_outside_and_inside(cluster):
    assert dist_autograd.current_context_id() == -1
    with dist_autograd.context() as context_id:
        assert dist_autograd.current_context_id() == context_id
    assert dist_autograd.current_context_id() == -1


def test_current_context_id_after_an_exception(cluster):
    with pytest.raises(KeyError):
        with dist_autograd.context():
            raise KeyError("inside")
    assert dist_autograd.current_context_id() == -1


def test_ids_of_worker0_have_rank_0_and_are_unique(cluster):
    ids = []
    for _ in range(5):
        with dist_autograd.context() as context_id:
            ids.append(context_id)
    assert all(context_id >> 48 == 0 for context_id in ids)
    assert all(context_id > 0 for context_id in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


@pytest.mark.parametrize("rank", [1, 2])
def test_context_created_by_another_worker_has_its_rank(cluster, rank):
    ids = set()
    for _ in range(3):
        context_id, inside, after = rpc.rpc_sync(f"worker{rank}", remote_fns.open_context)
        assert context_id >> 48 == rank
        assert inside == context_id
        assert after == -1
        ids.add(context_id)
    assert len(ids) == 3


@pytest.mark.parametrize("route", [
    ["worker1"],
    ["worker1", "worker2"],
    ["worker2", "worker0"],
    ["worker1", "worker2", "worker0", "worker1"],
], ids=lambda route: "-".join(route))
def test_callees_run_in_the_callers_context(cluster, route):
    with dist_autograd.context() as context_id:
        seen = rpc.rpc_sync(route[0], remote_fns.current_contexts, (route[1:],))
    assert seen == [context_id] * len(route)
    # Outside a context, callees see none.
    assert rpc.rpc_sync(route[0], remote_fns.current_contexts, (route[1:],)) == [-1] * len(route)


def test_contexts_cannot_be_nested(cluster):
    with dist_autograd.context() as context_id:
        with pytest.raises(distgrad.DistError) as excinfo:
            with dist_autograd.context():
                pass
        message = str(excinfo.value)
        assert "cannot be nested" in message
        assert str(context_id) in message
        # The outer context is still current and works.
        assert dist_autograd.current_context_id() == context_id
        t = torch.ones(2, requires_grad=True)
        dist_autograd.backward(context_id, [rpc.rpc_sync("worker1", torch.mul, (t, 3)).sum()])
        assert torch.equal(dist_autograd.get_gradients(context_id)[t], torch.full((2,), 3.0))


def test_callee_cannot_open_a_context_inside_the_callers(cluster):
    with dist_autograd.context() as context_id:
        with pytest.raises(RuntimeError) as excinfo:
            rpc.rpc_sync("worker1", remote_fns.open_context)
    message = str(excinfo.value)
    assert "cannot be nested" in message and str(context_id) in message
    assert "worker1" in message


def test_contexts_are_per_thread(cluster):
    with dist_autograd.context() as context_id:
        assert in_fresh_thread(dist_autograd.current_context_id) == -1
        # Another thread may open its own context meanwhile.
        other_id, inside, after = in_fresh_thread(remote_fns.open_context)
        assert other_id != context_id and inside == other_id and after == -1
        assert dist_autograd.current_context_id() == context_id


def test_threads_in_their_own_contexts_at_once(cluster):
    all_open = threading.Barrier(4)
    seen = {}

    def body(index):
        with dist_autograd.context() as context_id:
            all_open.wait(timeout=10)
            seen[index] = (context_id, rpc.rpc_sync("worker1", remote_fns.current_contexts, ([],)))
            all_open.wait(timeout=10)

    run_in_threads(body, 4, timeout=30)
    assert len({context_id for context_id, _ in seen.values()}) == 4
    for context_id, on_worker1 in seen.values():
        assert on_worker1 == [context_id]
