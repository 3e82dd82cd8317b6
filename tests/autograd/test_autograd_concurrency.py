"""Distributed backward passes at the same time: threads of worker0 each in
their own contexts, and several workers initiating passes inside RPC
handlers (parameter-server style). Each gets exactly the gradients of the
same computation done alone and locally."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns
from tests.autograd_checks import (
    assert_gradients, distributed_gradients, reference_gradients,
)
from tests.checks import run_in_threads

NUM_THREADS = 8
ITERATIONS_PER_THREAD = 20
ROUNDS = 10


def forward(call, x, y):
    a = call("worker1", torch.mul, x, y)
    b = call("worker2", remote_fns.mul_sin, a, x)
    return [(b * y).sum()]


def leaves(thread, iteration):
    """Values unique to a thread and an iteration."""
    base = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    return [(base / 7 + thread).requires_grad_(), (base / 5 - iteration).requires_grad_()]


def test_threads_each_get_their_own_gradients(cluster):
    def body(thread):
        for iteration in range(ITERATIONS_PER_THREAD):
            local, _ = distributed_gradients(forward, leaves(thread, iteration))
            expected, _ = reference_gradients(forward, leaves(thread, iteration))
            assert_gradients(local, expected)

    run_in_threads(body, NUM_THREADS, timeout=120)


def train_reference(peers, seed):
    x, y = remote_fns.train_leaves(seed)
    return list(torch.autograd.grad(remote_fns.train_forward(remote_fns.local_call, peers, x, y), [x, y]))


PEERS = {
    "worker0": ["worker1", "worker2"],
    "worker1": ["worker2", "worker0"],
    "worker2": ["worker0", "worker1"],
}


@pytest.mark.parametrize("steps_per_worker", [1, 2])
def test_workers_initiating_backward_inside_rpc_handlers(cluster, steps_per_worker):
    for round_ in range(ROUNDS):
        steps = [(worker, round_ * 10 + i * 3 + rank)
                 for rank, worker in enumerate(["worker1", "worker2"]) for i in range(steps_per_worker)]
        futures = [rpc.rpc_async(worker, remote_fns.train_step, (PEERS[worker], seed)) for worker, seed in steps]
        # worker0 initiates its own pass meanwhile.
        mine = remote_fns.train_step(PEERS["worker0"], round_)
        assert_gradients(mine, train_reference(PEERS["worker0"], round_))
        for (worker, seed), future in zip(steps, futures):
            assert_gradients(future.wait(), train_reference(PEERS[worker], seed))


def test_threads_asking_workers_to_initiate_backward(cluster):
    def body(thread):
        worker = f"worker{1 + thread % 2}"
        for iteration in range(5):
            seed = thread * 100 + iteration
            grads = rpc.rpc_sync(worker, remote_fns.train_step, (PEERS[worker], seed))
            assert_gradients(grads, train_reference(PEERS[worker], seed))

    run_in_threads(body, 4, timeout=120)
