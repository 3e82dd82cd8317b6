"""Calls made by the functions an RPC runs are recorded in the same context:
chains through several workers and back, A->B->C, A->B->A, and diamonds
whose branches run on other workers."""

import pytest
import torch

from tests import remote_fns
from tests.autograd_checks import check_against_reference

# Each route starts at worker0, which calls remote_fns.chain on route[0].
ROUTES = [
    ["worker1"],
    ["worker1", "worker2"],
    ["worker1", "worker0"],
    ["worker1", "worker2", "worker0"],
    ["worker2", "worker1", "worker0", "worker2", "worker1", "worker0"],
]


def leaves():
    return [torch.linspace(-2, 2, 5, dtype=torch.float64, requires_grad=True)]


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: "worker0-" + "-".join(route))
def test_chain(cluster, route):
    def forward(call, t):
        return [call(route[0], remote_fns.chain, call, route[1:], t).sum()]

    check_against_reference(forward, leaves)


@pytest.mark.parametrize("middle, dst", [
    ("worker1", "worker2"),
    ("worker1", "worker0"),
    ("worker2", "worker2"),
    ("worker0", "worker1"),
], ids=lambda name: name)
def test_nested_call_and_local_use_on_the_middle_worker(cluster, middle, dst):
    def forward(call, x, y):
        return [call(middle, remote_fns.via, call, middle, dst, x, y).sum()]

    check_against_reference(forward, lambda: [torch.linspace(-1, 1, 6, requires_grad=True),
                                              torch.linspace(0.5, 2, 6, requires_grad=True)])


@pytest.mark.parametrize("at, left, right", [
    ("worker1", "worker2", "worker0"),
    ("worker1", "worker2", "worker2"),
    ("worker2", "worker1", "worker1"),
], ids=lambda name: name)
def test_diamond_with_branches_on_other_workers(cluster, at, left, right):
    def forward(call, t):
        return [call(at, remote_fns.fan_out, call, left, right, t).sum()]

    # Three gradients meet at t, possibly added in another order than locally.
    check_against_reference(forward, lambda: [torch.linspace(-1, 1, 7, requires_grad=True)], exact=False)


def test_several_nested_chains_in_one_context(cluster):
    def forward(call, a, b):
        first = call("worker1", remote_fns.chain, call, ["worker2", "worker0"], a)
        second = call("worker2", remote_fns.chain, call, ["worker1"], b)
        return [call("worker1", remote_fns.via, call, "worker1", "worker2", first, second).sum()]

    check_against_reference(forward, lambda: [torch.linspace(-1, 1, 4, requires_grad=True),
                                              torch.linspace(0, 3, 4, requires_grad=True)])
