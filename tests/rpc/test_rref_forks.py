"""RRefs travelling as arguments and results, to their owner and to third
workers, nested in containers and objects; the owner keeps a value exactly
as long as some worker holds a reference to it."""

import threading

import pytest
import torch

import distgrad.rpc as rpc
from tests import rref_fns
from tests.checks import assert_same, run_in_threads, wait_for
from tests.rref_checks import RELEASE_DEADLINE, rref_counts

WORLD_SIZE = 3


def owned(worker):
    return rref_counts(worker)["num_owner_rrefs"]


@pytest.mark.parametrize("owner", ["worker1", "worker0"])
@pytest.mark.parametrize("holder", ["worker1", "worker2", "worker0"])
def test_rref_as_argument(cluster, owner, holder):
    rref = rpc.remote(owner, rref_fns.make_tensor, (5, 3))
    assert_same(rpc.rpc_sync(holder, rref_fns.to_here, (rref,)), torch.full((3,), 5.0))
    assert rpc.rpc_sync(holder, rref_fns.describe, (rref,))["is_owner"] == (holder == owner)


def test_rref_as_result(cluster):
    rrefs = rpc.rpc_sync("worker1", rref_fns.rref_list, (3, 10))
    assert [r.owner_name() for r in rrefs] == ["worker1"] * 3
    assert [r.to_here().tolist() for r in rrefs] == [[10.0, 10.0], [11.0, 11.0], [12.0, 12.0]]
    assert_same(rpc.rpc_sync("worker2", rref_fns.nested_values, (rrefs,)),
                [torch.full((2,), 10.0 + i) for i in range(3)])


def test_rref_of_an_rref(cluster):
    outer = rpc.remote("worker1", rref_fns.remote_on, ("worker2", rref_fns.make_tensor, (7, 2)))
    inner = outer.to_here()
    assert isinstance(inner, rpc.RRef)
    assert inner.owner_name() == "worker2"
    assert_same(inner.to_here(), torch.full((2,), 7.0))
    wait_for(inner.confirmed_by_owner, 5.0, "the owner to confirm the fork")


def test_rrefs_nested_in_containers_and_objects(cluster):
    r1 = rpc.remote("worker1", rref_fns.make_tensor, (1, 2))
    r2 = rpc.RRef(torch.zeros(1))
    nest = {"a": [r1, (r2, "x")], "b": r1}
    assert_same(rpc.rpc_sync("worker2", rref_fns.nested_values, (nest,)),
                {"a": [torch.ones(2), (torch.zeros(1), "x")], "b": torch.ones(2)})
    assert_same(rpc.rpc_sync("worker2", rref_fns.value_in_holder, (rref_fns.Holder(r1),)), torch.ones(2))
    back = rpc.rpc_sync("worker2", rref_fns.identity, (nest,))
    assert back["a"][1][0].is_owner() and back["a"][1][0].local_value() is r2.local_value()
    assert_same(back["b"].to_here(), torch.ones(2))


def test_rref_as_argument_of_remote(cluster):
    source = rpc.remote("worker1", rref_fns.make_tensor, (4, 2))
    copy_rref = rpc.remote("worker2", rref_fns.to_here, (source,))
    assert_same(copy_rref.to_here(), torch.full((2,), 4.0))


def test_fork_to_a_third_worker_before_the_value_exists(cluster):
    # worker2 asks worker1 for a value that worker1 may not have created yet.
    slow = rpc.remote("worker1", rref_fns.sleep_then, (0.3, torch.ones(2)))
    assert_same(rpc.rpc_sync("worker2", rref_fns.to_here, (slow,)), torch.ones(2))


def test_forwarded_along_a_chain(cluster):
    rref = rpc.RRef(torch.full((2,), 3.0))
    assert_same(rpc.rpc_sync("worker1", rref_fns.pass_on, ("worker2", rref)), torch.full((2,), 3.0))


def test_owner_deletes_the_value_once_no_reference_is_left(cluster):
    before = owned("worker1")
    rref = rpc.remote("worker1", rref_fns.make_tensor, (1, 2000))
    rref.to_here()
    assert owned("worker1") == before + 1
    del rref
    wait_for(lambda: owned("worker1") == before, RELEASE_DEADLINE, "the owner to delete the value")


def test_the_owner_destroys_a_python_value_on_its_pool_not_on_a_reader(cluster):
    # The release notice is handled on the owner's reader thread; a value that
    # is only memory (a tensor) is freed there, one whose destructor is user
    # code goes to the pool.
    before = rpc.rpc_sync("worker1", rref_fns.destroyed_on)
    rref = rpc.remote("worker1", rref_fns.DestroyedWhere)
    wait_for(rref.confirmed_by_owner, 5.0, "the owner to confirm the RRef")
    del rref
    wait_for(lambda: len(rpc.rpc_sync("worker1", rref_fns.destroyed_on)) == len(before) + 1,
             RELEASE_DEADLINE, "the owner to destroy the value")
    assert rpc.rpc_sync("worker1", rref_fns.destroyed_on)[-1] == "distgrad-pool"


def test_a_reference_held_elsewhere_keeps_the_value(cluster):
    before = owned("worker1")
    rref = rpc.remote("worker1", rref_fns.make_tensor, (2, 2))
    rpc.rpc_sync("worker2", rref_fns.keep, (rref,))
    del rref  # the fork worker2 keeps is enough
    assert owned("worker1") == before + 1
    counts = rref_counts("worker2")
    assert counts["num_user_rrefs"] == 1
    rpc.rpc_sync("worker2", rref_fns.drop_kept)
    wait_for(lambda: owned("worker1") == before, RELEASE_DEADLINE, "the owner to delete the value")


def test_reference_dropped_while_its_fork_is_in_flight(cluster):
    # worker0 sends its reference on and drops it at once: the owner must not
    # delete the value before it knows of worker2's fork.
    for i in range(20):
        rref = rpc.remote("worker1", rref_fns.make_tensor, (i, 2))
        future = rpc.rpc_async("worker2", rref_fns.keep_for, (rref, 0.01))
        del rref
        assert_same(future.wait(), torch.full((2,), float(i)))


def test_concurrent_forks_of_one_rref(cluster):
    rref = rpc.remote("worker1", rref_fns.Counter, (0,))

    def body(index):
        for _ in range(10):
            holder = ("worker2", "worker1", "worker0")[index % 3]
            assert rpc.rpc_sync(holder, rref_fns.owner_of, (rref,)) == ("worker1", holder == "worker1")
            rref.rpc_sync().add(1)

    run_in_threads(body, 6)
    assert rref.rpc_sync().get() == 60


def test_self_rpc_of_an_owned_rref(cluster):
    rref = rpc.RRef(torch.ones(2))
    back = rpc.rpc_sync("worker0", rref_fns.identity, (rref,))
    assert back.is_owner() and back.local_value() is rref.local_value()


def test_debug_info_counts(cluster):
    base = {name: rref_counts(name) for name in ("worker0", "worker1")}
    rref = rpc.remote("worker1", rref_fns.make_tensor, (1, 1))
    rref.to_here()
    assert rref_counts("worker0")["num_user_rrefs"] == base["worker0"]["num_user_rrefs"] + 1
    assert rref_counts("worker1")["num_owner_rrefs"] == base["worker1"]["num_owner_rrefs"] + 1
    assert rref_counts("worker1")["num_forks"] == base["worker1"]["num_forks"] + 1
    assert set(rpc.debug_info()) >= {"num_owner_rrefs", "num_user_rrefs", "num_forks", "num_pending_forks"}
