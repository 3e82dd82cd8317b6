"""Errors of distributed autograd: a backward function raising on some
worker fails the whole pass on the initiator with the original message and
that worker's name (and the job keeps working); unknown or released context
ids and invalid roots are refused with clear messages."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import check_against_reference, in_fresh_thread


def chain_through_every_worker(call, t):
    return [call("worker1", remote_fns.chain, call, ["worker2", "worker0"], t).sum()]


def leaf():
    return [torch.linspace(-1, 1, 4, requires_grad=True)]


def assert_everything_works():
    check_against_reference(chain_through_every_worker, leaf)


# (route of remote_fns.fail_in_backward from worker0, the worker whose backward raises)
FAILURES = [
    pytest.param([], "worker0", id="here"),
    pytest.param(["worker1"], "worker1", id="on-worker1"),
    pytest.param(["worker1", "worker2"], "worker2", id="on-worker2-via-worker1"),
    pytest.param(["worker2", "worker0"], "worker0", id="back-here-via-worker2"),
]


def failing(route, t):
    if not route:
        return remote_fns.fail_in_backward([], t)
    return rpc.rpc_sync(route[0], remote_fns.fail_in_backward, (route[1:], t))


@pytest.mark.parametrize("route, where", FAILURES)
def test_backward_function_raising(cluster, route, where):
    t = leaf()[0]
    with dist_autograd.context() as context_id:
        loss = failing(route, t).sum()
        # The ValueError raised by the backward function keeps its type.
        with pytest.raises(ValueError) as excinfo:
            in_fresh_thread(dist_autograd.backward, context_id, [loss], timeout=10)
        message = str(excinfo.value)
        assert "boom from backward" in message
        assert f"'{where}'" in message, message
    assert_everything_works()


@pytest.mark.parametrize("route, where", FAILURES)
def test_backward_function_raising_while_other_branches_run(cluster, route, where):
    t = leaf()[0]
    with dist_autograd.context() as context_id:
        healthy = [rpc.rpc_sync(f"worker{1 + i % 2}", remote_fns.chain, (remote_fns.rpc_call, ["worker0"], t * i))
                   for i in range(4)]
        loss = failing(route, t).sum() + sum(h.sum() for h in healthy)
        with pytest.raises(ValueError, match="boom from backward"):
            in_fresh_thread(dist_autograd.backward, context_id, [loss], timeout=10)
    assert_everything_works()


def test_failed_pass_leaves_the_context_usable(cluster):
    t = leaf()[0]
    with dist_autograd.context() as context_id:
        loss = failing(["worker1"], t).sum()
        with pytest.raises(ValueError, match="boom from backward"):
            in_fresh_thread(dist_autograd.backward, context_id, [loss], timeout=10)
        # Another pass in the same context, over a graph that works (and does
        # not involve t, whose send function of the failed pass never
        # receives gradients: FAST mode would wait for them).
        u = leaf()[0]
        good = rpc.rpc_sync("worker2", torch.mul, (u, 3)).sum()
        in_fresh_thread(dist_autograd.backward, context_id, [good], timeout=10)
        assert torch.equal(dist_autograd.get_gradients(context_id)[u], torch.full((4,), 3.0))


def _released_id():
    with dist_autograd.context() as context_id:
        rpc.rpc_sync("worker1", torch.add, (torch.ones(1), 1))
    return context_id


UNKNOWN_IDS = [
    pytest.param(lambda: 123456789, id="never-created"),
    pytest.param(lambda: (2 << 48) + 987654, id="never-created-by-worker2"),
    pytest.param(_released_id, id="released"),
]


@pytest.mark.parametrize("make_id", UNKNOWN_IDS)
def test_unknown_context_id(cluster, make_id):
    context_id = make_id()
    t = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=f"context {context_id} is not known"):
        dist_autograd.backward(context_id, [(t * 2).sum()])
    with pytest.raises(ValueError, match=f"context {context_id} is not known"):
        dist_autograd.get_gradients(context_id)
    with pytest.raises(ValueError, match=f"context {context_id} is not known") as excinfo:
        rpc.rpc_sync("worker1", dist_autograd.get_gradients, (context_id,))
    assert "worker1" in str(excinfo.value)


def _roots(kind, t):
    good = (t * 2).sum()
    return {
        "empty": lambda: [],
        "not-scalar": lambda: [rpc.rpc_sync("worker1", torch.mul, (t.detach().requires_grad_(), 2))],
        "not-requiring-grad": lambda: [torch.tensor(1.0)],
        "detached": lambda: [good.detach()],
        "second-not-scalar": lambda: [good, t * 2],
        "second-not-requiring-grad": lambda: [good, torch.ones(())],
    }[kind]()


BAD_ROOTS = [
    pytest.param("empty", "needs at least one root tensor", id="empty"),
    pytest.param("not-scalar", "root 0 of distributed backward has 3 elements; roots must be scalars", id="not-scalar"),
    pytest.param("not-requiring-grad", "root 0 of distributed backward does not require grad", id="not-requiring-grad"),
    pytest.param("detached", "root 0 of distributed backward does not require grad", id="detached"),
    pytest.param("second-not-scalar", "root 1 of distributed backward has 3 elements", id="second-not-scalar"),
    pytest.param("second-not-requiring-grad", "root 1 of distributed backward does not require grad",
                 id="second-not-requiring-grad"),
]


@pytest.mark.parametrize("kind, fragment", BAD_ROOTS)
def test_invalid_roots(cluster, kind, fragment):
    with dist_autograd.context() as context_id:
        t = torch.linspace(0, 1, 3, requires_grad=True)
        roots = _roots(kind, t)
        with pytest.raises(ValueError) as excinfo:
            dist_autograd.backward(context_id, roots)
        assert fragment in str(excinfo.value)
        # Nothing ran: the context holds no gradient and still works.
        assert dist_autograd.get_gradients(context_id) == {}
        dist_autograd.backward(context_id, [rpc.rpc_sync("worker2", torch.mul, (t, 2)).sum()])
        assert torch.equal(dist_autograd.get_gradients(context_id)[t], torch.full((3,), 2.0))
