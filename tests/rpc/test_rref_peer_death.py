"""RRefs when a worker dies: its references are dropped by the owners (no
leak for the life of the job), and references to its values fail clearly."""

import pytest
import torch

import distgrad
import distgrad.rpc as rpc
from tests import remote_fns, rref_fns
from tests.checks import wait_for
from tests.rref_checks import RELEASE_DEADLINE, rref_counts

WORLD_SIZE = 4


@pytest.fixture(scope="module")
def after_death(cluster):
    """worker3 holds references to values owned by worker1 and worker0 and
    owns a value worker0 refers to; then it is killed."""
    base = {w: rref_counts(w) for w in ("worker0", "worker1")}
    on_worker1 = rpc.remote("worker1", rref_fns.make_tensor, (1, 2))
    on_worker0 = rpc.RRef(torch.zeros(2))
    for rref in (on_worker1, on_worker0):
        rpc.rpc_sync("worker3", rref_fns.keep, (rref,))
    on_worker3 = rpc.remote("worker3", rref_fns.make_tensor, (3, 2))
    on_worker3.to_here()
    del on_worker1, on_worker0
    assert rpc.rpc_sync("worker2", remote_fns.call, ("worker3", remote_fns.whoami)) == "worker3"
    cluster.kill(3)
    return base, on_worker3


@pytest.mark.parametrize("owner", ["worker0", "worker1"])
def test_owner_drops_the_references_of_a_dead_worker(after_death, owner):
    base, _ = after_death

    def owned(counts):
        return counts["num_owner_rrefs"], counts["num_forks"]

    wait_for(lambda: owned(rref_counts(owner)) == owned(base[owner]), RELEASE_DEADLINE,
             f"{owner} to drop worker3's references")


def test_reference_to_a_value_of_the_dead_worker(after_death):
    _, on_worker3 = after_death
    with pytest.raises(distgrad.DistNetworkError, match="worker 'worker3'"):
        on_worker3.to_here()
    with pytest.raises(distgrad.DistNetworkError, match="worker 'worker3'"):
        on_worker3.rpc_sync().size()


def test_the_others_carry_on(after_death):
    rref = rpc.remote("worker2", rref_fns.make_tensor, (5, 1))
    assert rpc.rpc_sync("worker1", rref_fns.to_here, (rref,)).tolist() == [5.0]
