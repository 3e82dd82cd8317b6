"""remote() with each kind of func, to a peer and to this worker itself;
what an RRef tells about itself; errors surfacing when it is used."""

import copy
import io
import pickle
import time

import pytest
import torch

import distgrad.rpc as rpc
from distgrad import DistTimeoutError
from tests import remote_fns, rref_fns, script_fns
from tests.checks import assert_same, remote_message, wait_for

WORLD_SIZE = 3
# worker0 is this process: a remote() to it makes an RRef owned here.
DESTINATIONS = ["worker1", "worker0"]

A = torch.arange(6, dtype=torch.float32).reshape(2, 3)
B = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.25, -4.0]])

FUNCS = [
    pytest.param(torch.add, id="builtin"),
    pytest.param(script_fns.local_add, id="torchscript"),
    pytest.param("tests.script_fns.local_add", id="torchscript-by-name"),
    pytest.param(remote_fns.add, id="python"),
]


@pytest.mark.parametrize("dst", DESTINATIONS)
@pytest.mark.parametrize("func", FUNCS)
def test_remote_keeps_the_result_on_the_callee(cluster, dst, func):
    rref = rpc.remote(dst, func, args=(A, B))
    assert rref.owner() == rpc.get_worker_info(dst)
    assert rref.owner_name() == dst
    assert rref.is_owner() == (dst == "worker0")
    assert_same(rref.to_here(), A + B)
    # The owner sees the value itself.
    assert_same(rpc.rpc_sync(dst, rref_fns.local_value, (rref,)), A + B)
    wait_for(rref.confirmed_by_owner, 5.0, "the owner to confirm the RRef")


def test_remote_keyword_arguments(cluster):
    rref = rpc.remote("worker1", remote_fns.combine, args=(A, B), kwargs={"scale": 2, "tag": "k"})
    assert_same(rref.to_here()["sum"], A + 2 * B)
    rref = rpc.remote("worker1", torch.add, args=(A, B), kwargs={"alpha": 3})
    assert_same(rref.to_here(), A + 3 * B)


def test_remote_to_a_rank_or_worker_info(cluster):
    for to in (1, rpc.get_worker_info("worker1")):
        assert rpc.remote(to, rref_fns.make_tensor, (3, 2)).owner_name() == "worker1"


def test_remote_returns_before_the_function_has_run(cluster):
    start = time.monotonic()
    rref = rpc.remote("worker1", rref_fns.sleep_then, (0.5, 7))
    assert time.monotonic() - start < 0.25
    assert not rref.confirmed_by_owner()
    assert rref.to_here() == 7
    wait_for(rref.confirmed_by_owner, 5.0, "the owner to confirm the RRef")


def test_to_here_returns_a_copy_and_local_value_the_value_itself(cluster):
    rref = rpc.remote("worker0", rref_fns.make_tensor, (1, 3))
    assert rref.local_value() is rref.local_value()
    assert rref.to_here() is rref.local_value()
    remote_rref = rpc.remote("worker1", rref_fns.make_tensor, (1, 3))
    first = remote_rref.to_here()
    first.add_(10)
    assert_same(remote_rref.to_here(), torch.ones(3))


@pytest.mark.parametrize("value", [torch.ones(2, 2), 7, "text", {"k": [1, (2, None)]}, rref_fns.Point(1, 2)],
                         ids=["tensor", "int", "str", "nested", "object"])
def test_local_rref(cluster, value):
    rref = rpc.RRef(value)
    assert rref.is_owner() and rref.confirmed_by_owner()
    assert rref.owner_name() == "worker0"
    assert rref.local_value() is value
    assert rref.to_here() is value
    assert_same(rpc.rpc_sync("worker1", rref_fns.to_here, (rref,)), value)


def test_value_that_cannot_be_pickled(cluster):
    rref = rpc.remote("worker1", rref_fns.Counter, (3,))  # holds a lock
    with pytest.raises(TypeError) as excinfo:
        rref.to_here()
    assert "cannot pickle '_thread.lock' object" in remote_message(excinfo)
    assert "(TypeError raised on worker 'worker1')" in remote_message(excinfo)
    assert rref.rpc_sync().add(2) == 5


def test_rref_type_hint(cluster):
    assert rpc.RRef[torch.Tensor] is rpc.RRef

    def typed(rref: rpc.RRef[torch.Tensor]) -> torch.Tensor:
        return rref.to_here()

    assert_same(typed(rpc.RRef(A)), A)


def test_error_surfaces_when_the_rref_is_used(cluster):
    rref = rpc.remote("worker1", rref_fns.raise_value_error, ("no such value",))
    for use in (rref.to_here, lambda: rpc.rpc_sync("worker1", rref_fns.local_value, (rref,)),
                lambda: rref.rpc_sync().anything()):
        with pytest.raises(ValueError) as excinfo:
            use()
        assert "no such value" in remote_message(excinfo)
        assert "(ValueError raised on worker 'worker1')" in remote_message(excinfo)
        assert "raised on worker ''" not in remote_message(excinfo)


def test_error_of_a_remote_to_this_worker(cluster):
    rref = rpc.remote("worker0", rref_fns.raise_value_error, ("bad start",))
    with pytest.raises(ValueError, match="bad start"):
        rref.local_value()
    with pytest.raises(ValueError, match="bad start"):
        rref.to_here()


def test_builtin_error_surfaces_when_the_rref_is_used(cluster):
    rref = rpc.remote("worker1", torch.add, (torch.ones(2), torch.ones(3)))
    with pytest.raises(RuntimeError, match="size of tensor a \\(2\\) must match"):
        rref.to_here()


def test_creation_timeout(cluster):
    rref = rpc.remote("worker1", rref_fns.sleep_then, (0.6, 1), timeout=0.1)
    with pytest.raises(DistTimeoutError, match="timed out after 0.1 seconds"):
        rref.to_here()
    # The owner creates the value anyway, and deletes it since nobody holds it.
    del rref
    time.sleep(0.6)


def test_to_here_timeout(cluster):
    rref = rpc.remote("worker1", rref_fns.sleep_then, (0.6, 1))
    with pytest.raises(DistTimeoutError, match="timed out after 0.1 seconds"):
        rref.to_here(timeout=0.1)
    assert rref.to_here(timeout=0) == 1


def test_local_value_only_on_the_owner(cluster):
    rref = rpc.remote("worker1", rref_fns.make_tensor, (1, 2))
    with pytest.raises(ValueError, match="is owned by worker 'worker1', not by this worker: local_value\\(\\) "
                                         "works only on the owner"):
        rref.local_value()


def test_bad_destination_leaves_nothing_behind(cluster):
    with pytest.raises(ValueError, match="unknown worker 'nobody'"):
        rpc.remote("nobody", torch.add, (A, B))
    with pytest.raises(ValueError, match="unknown worker rank 9"):
        rpc.remote(9, torch.add, (A, B))
    with pytest.raises(TypeError, match="func must be callable"):
        rpc.remote("worker1", 3)


@pytest.mark.parametrize("dump", [pickle.dumps, lambda r: torch.save(r, io.BytesIO()), copy.deepcopy],
                         ids=["pickle", "torch.save", "deepcopy"])
def test_pickling_outside_an_rpc_fails(cluster, dump):
    rref = rpc.RRef(A)
    with pytest.raises(RuntimeError, match="an RRef can only be pickled as part of a distgrad RPC"):
        dump(rref)


def test_repr(cluster):
    mine = rpc.RRef(1)
    theirs = rpc.remote("worker1", rref_fns.make_tensor, (1, 1))
    assert repr(mine).startswith("RRef(id=") and repr(mine).endswith(", owner='worker0', owner)")
    assert repr(theirs).endswith(", owner='worker1', user)")
