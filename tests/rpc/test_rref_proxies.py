"""rref.rpc_sync() / rpc_async() / remote() proxies: methods of the value
run on its owner."""

import pytest
import torch

import distgrad.rpc as rpc
from distgrad import DistTimeoutError
from tests import rref_fns
from tests.checks import assert_same, remote_message, wait_for

WORLD_SIZE = 3

OWNERS = ["worker1", "worker0"]


def counter(owner, start=0):
    return rpc.remote(owner, rref_fns.Counter, (start,))


@pytest.mark.parametrize("owner", OWNERS)
def test_rpc_sync_proxy(cluster, owner):
    rref = counter(owner, 5)
    assert rref.rpc_sync().add(3) == 8
    assert rref.rpc_sync().get() == 8
    assert rref.rpc_sync().static_twice(21) == 42


@pytest.mark.parametrize("owner", OWNERS)
def test_rpc_async_proxy(cluster, owner):
    rref = counter(owner)
    futures = [rref.rpc_async().add(i) for i in range(1, 5)]
    assert sorted(f.wait() for f in futures)[-1] == 10
    assert rref.rpc_async().get().wait() == 10


@pytest.mark.parametrize("owner", OWNERS)
def test_remote_proxy_makes_an_rref_on_the_owner(cluster, owner):
    rref = counter(owner, 1)
    made = rref.remote().make(7)  # a classmethod returning a new Counter
    assert made.owner_name() == owner
    assert made.rpc_sync().get() == 7
    assert_same(rpc.RRef(torch.ones(2)).remote().add(1).to_here(), torch.full((2,), 2.0))


def test_proxy_on_a_tensor_value(cluster):
    rref = rpc.remote("worker1", rref_fns.make_tensor, (3, 4))
    assert rref.rpc_sync().size() == torch.Size([4])
    assert_same(rref.rpc_sync().view(2, 2), torch.full((2, 2), 3.0))


def test_proxy_forwarded_to_a_third_worker(cluster):
    rref = counter("worker1")
    rpc.rpc_sync("worker2", rref_fns.call_add, (rref, 4))
    assert rref.rpc_sync().get() == 4


def test_proxy_errors(cluster):
    rref = counter("worker1")
    with pytest.raises(ValueError) as excinfo:
        rref.rpc_sync().fail("refused")
    assert "refused" in remote_message(excinfo)
    assert "(ValueError raised on worker 'worker1')" in remote_message(excinfo)
    with pytest.raises(AttributeError, match="'Counter' object has no attribute 'missing'"):
        rref.rpc_sync().missing()
    with pytest.raises(AttributeError, match="'Counter' object has no attribute 'missing'"):
        rref.rpc_async().missing().wait()
    with pytest.raises(AttributeError, match="'Counter' object has no attribute 'missing'"):
        rref.remote().missing().to_here()


def test_proxy_timeout(cluster):
    rref = rpc.remote("worker1", rref_fns.Counter, (0,))
    with pytest.raises(DistTimeoutError, match="timed out after 0.1 seconds"):
        rref.rpc_sync(timeout=0.1).add_later(1, 0.5)
    with pytest.raises(DistTimeoutError, match="timed out after 0.1 seconds"):
        rref.rpc_async(timeout=0.1).add_later(1, 0.5).wait()
    # The timed-out calls still complete on the owner.
    wait_for(lambda: rref.rpc_sync().get() == 2, 5.0, "the timed-out calls to finish")
    assert rref.rpc_sync(timeout=5).add_later(1, 0.01) == 3
