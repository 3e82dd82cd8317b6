"""Contexts leave nothing behind: releasing one frees what it held (leaves,
gradients, graphs), and many short-lived contexts leave no live context on
any worker and no growth of resident memory."""

import gc
import time
import weakref

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import num_contexts, wait_for_contexts

ITERATIONS = 10_000
WARM_UP = 1_000
# Growth of the resident set allowed over ITERATIONS, per process. The
# container of released ids (bounded, a few dozen bytes per id) accounts for
# part of it.
RSS_BOUND = 4 * 1024 * 1024
# How many contexts a worker may still hold at a sample, their release
# messages being on their way.
IN_FLIGHT = 2


def forward_only(t):
    with dist_autograd.context():
        rpc.rpc_sync("worker1", torch.mul, (t, 2)).sum()


def backward_across_rpc(t):
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [rpc.rpc_sync("worker1", torch.mul, (t, 2)).sum()])


def backward_here(t):
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [(t * 2).sum()])


@pytest.mark.parametrize("use", [forward_only, backward_across_rpc, backward_here], ids=lambda f: f.__name__)
def test_leaf_is_freed_with_its_context(cluster, use):
    t = torch.rand(3, 3, requires_grad=True)
    use(t)
    leaf = weakref.ref(t)
    del t
    gc.collect()
    assert leaf() is None, "a released context still holds its leaf"


def iteration(t1, t2):
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync("worker1", torch.add, (t1, t2)).sum()
        dist_autograd.backward(context_id, [loss])
        grads = dist_autograd.get_gradients(context_id)
    return grads


def rss():
    return {"worker0": remote_fns.rss_bytes(), "worker1": rpc.rpc_sync("worker1", remote_fns.rss_bytes)}


def test_contexts_and_memory_do_not_grow(cluster):
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    before = num_contexts()
    for _ in range(WARM_UP):
        iteration(t1, t2)
    wait_for_contexts(before)
    rss_before = rss()
    start = time.monotonic()
    for i in range(ITERATIONS):
        grads = iteration(t1, t2)
        if i % 1000 == 999:
            assert len(grads) == 2 and torch.equal(grads[t1], torch.ones(3, 3))
            live = num_contexts()
            assert all(live[w] <= before[w] + IN_FLIGHT for w in live), f"iteration {i}: live contexts {live}"
    elapsed = time.monotonic() - start
    wait_for_contexts(before)
    rss_after = rss()
    growth = {w: rss_after[w] - rss_before[w] for w in rss_after}
    assert all(g <= RSS_BOUND for g in growth.values()), \
        f"resident memory grew by {growth} bytes over {ITERATIONS} iterations ({elapsed:.1f} s)"
    print(f"{ITERATIONS} iterations in {elapsed:.1f} s; resident memory growth {growth} bytes")
