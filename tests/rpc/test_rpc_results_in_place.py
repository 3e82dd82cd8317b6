"""A builtin operator called with large tensors by a worker on the same
machine computes its results straight into the callee's shared memory
arena, through its out= overload, and the reply lends those regions to the
caller instead of copying them (rpc/out_variant.h). The first call of a
signature (operator, argument shapes and dtypes) runs as before and tells
the next ones what to allocate. What the caller gets is exactly what the
operator returns locally; whatever cannot run that way (aliasing, random,
data-dependent or autograd-recorded calls, operators without a CPU out=
kernel, RRef values) runs as before. ``num_results_sent_in_place`` in
``rpc.debug_info()`` counts the lent results."""

import gc

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import assert_same, remote_message, wait_for

WORLD_SIZE = 2
LARGE = 1 << 20  # elements: 4 MiB of float32, far above the 64 KiB threshold


def lent(worker="worker1"):
    return rpc.rpc_sync(worker, rpc.debug_info)["num_results_sent_in_place"]


def arena_in_use(worker):
    return rpc.rpc_sync(worker, rpc.debug_info)["shared_memory_bytes_in_use"]


def all_regions_back():
    gc.collect()
    return arena_in_use("worker0") == 0 and arena_in_use("worker1") == 0


def integers(*shape, dtype=torch.float32):
    """Small whole numbers: sums and products of them are exact in any
    order, so results do not depend on how many threads computed them."""
    return torch.randint(-8, 9, shape).to(dtype)


def wide(dtype=torch.float32):
    return integers(16, LARGE // 16, dtype=dtype)


# (operator, arguments, keyword arguments, results lent)
COMPUTED_IN_PLACE = {
    "mul": (torch.mul, lambda: (torch.randn(LARGE), 3), {}, 1),
    "add_promotes_int_to_float": (torch.add, lambda: (torch.arange(LARGE), 1.5), {}, 1),
    "div_of_ints_is_float": (torch.div, lambda: (torch.arange(LARGE), 3), {}, 1),
    "remainder_by_a_scalar": (torch.remainder, lambda: (torch.randn(LARGE) * 10, 2.5), {}, 1),
    "mul_of_two_tensors": (torch.mul, lambda: (torch.randn(LARGE), torch.randn(LARGE)), {}, 1),
    "mm": (torch.mm, lambda: (integers(512, 256), integers(256, 512)), {}, 1),
    "cat_of_a_list": (torch.cat, lambda: ([torch.randn(LARGE // 2), torch.randn(LARGE // 2)],), {}, 1),
    "max_two_results": (torch.max, lambda: (wide(), 0), {}, 2),
    "sum_keyword_dtype": (torch.sum, lambda: (wide(),), {"dim": 0, "dtype": torch.float64}, 1),
    "where_three_inputs": (torch.where, lambda: (torch.randn(LARGE) > 0, torch.randn(LARGE), torch.zeros(LARGE)),
                           {}, 1),
}


@pytest.mark.parametrize("name", COMPUTED_IN_PLACE)
def test_result_computed_in_place_equals_the_operator_s_own(name):
    op, make_args, kwargs, num_lent = COMPUTED_IN_PLACE[name]
    rpc.rpc_sync("worker1", op, make_args(), kwargs)  # learns the results' shapes
    args = make_args()
    before = lent()
    result = rpc.rpc_sync("worker1", op, args, kwargs)
    assert_same(tuple(result) if isinstance(result, tuple) else result,
                tuple(op(*args, **kwargs)) if num_lent > 1 else op(*args, **kwargs))
    assert lent() == before + num_lent
    # The regions stay worker1's until worker0 frees what it received.
    assert arena_in_use("worker1") >= sum(t.nbytes for t in (result if num_lent > 1 else (result,)))
    del result
    wait_for(all_regions_back, 5, "every arena region to be released")


def test_the_first_call_of_a_signature_copies_and_the_next_ones_lend():
    for shape in [(LARGE + 1024,), (LARGE + 2048,), (4, LARGE // 4 + 1)]:
        t = torch.randn(shape)
        before = lent()
        assert_same(rpc.rpc_sync("worker1", torch.mul, (t, 2)), t * 2)
        assert lent() == before
        for i in range(3):
            assert_same(rpc.rpc_sync("worker1", torch.mul, (t, 2)), t * 2)
            assert lent() == before + i + 1
    # Another dtype is another signature.
    t = torch.randn(LARGE + 1024).double()
    before = lent()
    rpc.rpc_sync("worker1", torch.mul, (t, 2))
    assert_same(rpc.rpc_sync("worker1", torch.mul, (t, 2)), t * 2)
    assert lent() == before + 1
    wait_for(all_regions_back, 5, "every arena region to be released")


def test_lent_result_is_the_caller_s_own():
    t = torch.ones(LARGE)
    rpc.rpc_sync("worker1", torch.mul, (t, 2))
    result = rpc.rpc_sync("worker1", torch.mul, (t, 2))
    result.add_(1.0)
    assert torch.equal(result, torch.full((LARGE,), 3.0))
    # Sent back, it arrives as a copy: worker1 returns it and worker0 still
    # holds its own values.
    again = rpc.rpc_sync("worker1", remote_fns.identity, (result,))
    result.zero_()
    assert torch.equal(again, torch.full((LARGE,), 3.0))
    # The next result reuses the region only once worker0 has let it go.
    del result, again
    wait_for(all_regions_back, 5, "every arena region to be released")
    for _ in range(5):
        assert torch.equal(rpc.rpc_sync("worker1", torch.mul, (t, 4)), torch.full((LARGE,), 4.0))
    wait_for(all_regions_back, 5, "every arena region to be released")


# Calls whose results are not lent, and still exact.
NOT_IN_PLACE = {
    # A view of the argument, which goes back as a reference.
    "aliasing_view": (torch.transpose, lambda: (torch.randn(1024, 1024), 0, 1)),
    # Random: a failed out= run must not draw numbers twice.
    "random": (torch.bernoulli, lambda: (torch.zeros(LARGE),)),
    # aten::where.ScalarOther has no out= overload.
    "no_out_overload": (torch.where, lambda: (torch.randn(LARGE) > 0, torch.randn(LARGE), 0.5)),
    # Its result's size depends on the data (dynamic_output_shape).
    "data_dependent_size": (torch.nonzero, lambda: (torch.randn(LARGE) > 0,)),
    # Small inputs run on the reader, without a meta run.
    "small_inputs": (torch.mul, lambda: (torch.randn(100), 2)),
    # Results below the arena's 64 KiB threshold travel inline.
    "small_result": (torch.sum, lambda: (integers(LARGE),)),
}


@pytest.mark.parametrize("name", NOT_IN_PLACE)
def test_calls_that_do_not_compute_in_place(name):
    op, make_args = NOT_IN_PLACE[name]
    before = lent()
    for _ in range(3):
        args = make_args()
        assert_same(rpc.rpc_sync("worker1", op, args), op(*args).contiguous())
    assert lent() == before


def test_a_python_function_s_result_is_copied():
    before = lent()
    t = torch.randn(LARGE)
    for _ in range(3):
        assert_same(rpc.rpc_sync("worker1", remote_fns.add, (t, t)), t + t)
    assert lent() == before


def test_an_rref_value_stays_out_of_the_arena():
    t = torch.randn(LARGE)
    before = lent()
    rpc.remote("worker1", torch.mul, (t, 2)).to_here()
    rref = rpc.remote("worker1", torch.mul, (t, 2))
    assert_same(rref.to_here(), t * 2)
    # While the RRef lives, its value holds nothing of worker1's arena: it
    # lives in worker1's own memory (the fetched copies' regions come back).
    wait_for(all_regions_back, 5, "every arena region to be released")
    assert lent() == before
    del rref


def test_a_call_recorded_for_autograd_runs_the_functional_operator():
    t = torch.randn(LARGE, requires_grad=True)
    before = lent()
    for _ in range(2):
        with dist_autograd.context() as context_id:
            loss = rpc.rpc_sync("worker1", torch.mul, (t, 3)).sum()
            dist_autograd.backward(context_id, [loss])
            assert torch.equal(dist_autograd.get_gradients(context_id)[t], torch.full((LARGE,), 3.0))
    assert lent() == before


def test_an_error_is_the_operator_s_own():
    a, b = torch.randn(512, 300), torch.randn(256, 512)
    with pytest.raises(RuntimeError) as local:
        torch.mm(a, b)
    for _ in range(2):
        with pytest.raises(RuntimeError) as remote:
            rpc.rpc_sync("worker1", torch.mm, (a, b))
        assert str(local.value) in remote_message(remote)
