"""Large tensors between workers on the same machine go through the
sender's shared memory arena and arrive as views of it. The views behave
like any received tensor (no memory is shared with the sender's tensors,
nor with what the receiver keeps when it sends a view back), and the arena
gets every region back once the tensors using it are freed."""

import gc

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import assert_same, wait_for

WORLD_SIZE = 2
LARGE = 1 << 20  # elements; 4 MiB of float32, far above the 64 KiB threshold


def arena_in_use(worker):
    return rpc.rpc_sync(worker, rpc.debug_info)["shared_memory_bytes_in_use"]


def all_regions_back():
    gc.collect()
    return arena_in_use("worker0") == 0 and arena_in_use("worker1") == 0


def test_large_round_trip_is_exact_and_regions_come_back(cluster):
    for i in range(20):
        t = torch.randn(LARGE)
        result = rpc.rpc_sync("worker1", remote_fns.identity, (t,))
        assert_same(result, t)
    del result
    wait_for(all_regions_back, 5, "every arena region to be released")


def test_region_is_held_while_the_received_tensor_lives(cluster):
    t = torch.randn(LARGE)
    kept = rpc.rpc_sync("worker1", torch.neg, (t,))
    # worker1's reply lives in worker1's arena until worker0 frees it.
    wait_for(lambda: arena_in_use("worker0") == 0, 5, "worker0's request region to be released")
    assert arena_in_use("worker1") >= t.nbytes
    assert torch.equal(kept, -t)
    del kept
    wait_for(all_regions_back, 5, "the reply's region to be released")


def test_received_view_is_writable_and_independent_of_the_source(cluster):
    t = torch.ones(LARGE)
    result = rpc.rpc_sync("worker1", remote_fns.identity, (t,))
    t.fill_(5.0)  # the sender's tensor was copied when sent
    assert torch.equal(result, torch.ones(LARGE))
    result.add_(1.0)
    assert torch.equal(result, torch.full((LARGE,), 2.0))
    # Sent on again, the modified view travels with its new values.
    assert torch.equal(rpc.rpc_sync("worker1", torch.sum, (result,)), torch.tensor(2.0 * LARGE))


@pytest.mark.parametrize("dtype", [torch.float16, torch.int64, torch.bool, torch.complex64])
def test_dtypes_and_shapes_through_the_arena(cluster, dtype):
    t = (torch.randn(64, 128, 33) * 10).to(dtype)
    assert_same(rpc.rpc_sync("worker1", remote_fns.identity, (t,)), t)
    assert_same(rpc.rpc_sync("worker1", remote_fns.identity, (t.transpose(0, 2),)), t.transpose(0, 2).contiguous())


def test_many_large_tensors_in_one_message(cluster):
    tensors = [torch.full((LARGE // 4,), float(i)) for i in range(12)]
    assert_same(rpc.rpc_sync("worker1", remote_fns.identity, (tensors,)), tensors)


def test_view_sent_back_to_its_owner_comes_back_as_a_copy(cluster):
    t = torch.randn(LARGE)
    # worker1 returns the very view it received: worker0 gets its values in
    # memory of its own (a region of its arena only it holds, whose pages
    # stay warm), and the region sent is free once worker1 drops the view.
    result = rpc.rpc_sync("worker1", remote_fns.identity, (t,))
    assert_same(result, t)
    wait_for(lambda: arena_in_use("worker0") == t.nbytes, 5, "the region sent to be released")
    assert arena_in_use("worker1") == 0
    result.mul_(2.0)
    assert torch.equal(rpc.rpc_sync("worker1", remote_fns.identity, (result,)), 2 * t)
    del result
    wait_for(all_regions_back, 5, "every region to be released")


def test_a_callee_keeping_its_argument_shares_no_memory_with_the_caller(cluster):
    # A parameter server's set/get: worker1 stores the tensor it received
    # and returns it; each side's in-place updates stay on that side.
    t = torch.ones(LARGE)
    result = rpc.rpc_sync("worker1", remote_fns.store_tensor, (t,))
    result.add_(1.0)
    assert torch.equal(rpc.rpc_sync("worker1", remote_fns.stored_sum), torch.tensor(float(LARGE)))
    rpc.rpc_sync("worker1", remote_fns.scale_stored, (10.0,))
    assert torch.equal(result, torch.full((LARGE,), 2.0))
    assert torch.equal(rpc.rpc_sync("worker1", remote_fns.stored_sum), torch.tensor(10.0 * LARGE))
    rpc.rpc_sync("worker1", remote_fns.drop_stored)
    del result
    wait_for(all_regions_back, 5, "every region to be released")


def test_slice_of_a_view_goes_back(cluster):
    t = torch.arange(LARGE, dtype=torch.float32)
    half = rpc.rpc_sync("worker1", remote_fns.second_half, (t,))
    assert_same(half, t[LARGE // 2:])
    del half
    wait_for(all_regions_back, 5, "every region to be released")
