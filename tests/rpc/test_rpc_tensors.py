"""Tensors travelling through RPC: dtypes, shapes, strides and sizes, through
each kind of func, in the request and in the response."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.checks import assert_same

# The three ways a tensor can travel: pickled with a Python call, as an
# operator argument, as a TorchScript argument.
ECHOES = {
    "python": remote_fns.identity,
    "builtin": torch.clone,
    "script": script_fns.identity,
}

DTYPES = [
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
    torch.bool, torch.complex64,
]


def sample(dtype, shape=(3, 5)):
    """Distinct, exactly representable values of dtype, including negative
    ones where the dtype has them."""
    n = torch.Size(shape).numel()
    values = torch.arange(n, dtype=torch.float64).reshape(shape)
    if dtype == torch.bool:
        return values.remainder(3) == 1
    if dtype == torch.complex64:
        return torch.complex(values - 4, 0.5 * values).to(dtype)
    if dtype in (torch.uint8,):
        return (values * 17).remainder(256).to(dtype)
    return (values - 4).to(dtype)


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(cluster, dtype, echo):
    t = sample(dtype)
    assert_same(rpc.rpc_sync("worker1", ECHOES[echo], (t,)), t)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes_in_operator_results(cluster, dtype):
    # A result of a different dtype than the argument (a bool comparison) and
    # a tuple with an int64 index tensor.
    t = sample(dtype)
    assert_same(rpc.rpc_sync("worker2", torch.eq, (t, t[0])), torch.eq(t, t[0]))
    if not dtype.is_complex:
        assert_same(rpc.rpc_sync("worker2", torch.max, (t,), {"dim": 1}), torch.max(t, dim=1))


BASE = torch.arange(6 * 8, dtype=torch.float32).reshape(6, 8)
NON_CONTIGUOUS = {
    "transposed": lambda: BASE.t(),
    "step-slice": lambda: BASE[::2, 1::3],
    "offset-block": lambda: BASE[2:, 3:],
    "expanded": lambda: torch.arange(4.0).expand(3, 4),
    "permuted-3d": lambda: BASE.reshape(2, 3, 8).permute(2, 0, 1),
    "conj-view": lambda: torch.complex(BASE, -BASE).conj(),
    "column": lambda: BASE[:, 5],
}


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("view", NON_CONTIGUOUS)
def test_non_contiguous_arguments(cluster, view, echo):
    t = NON_CONTIGUOUS[view]()
    result = rpc.rpc_sync("worker1", ECHOES[echo], (t,))
    assert_same(result, t.resolve_conj())
    assert not result.is_conj()


@pytest.mark.parametrize("func, expected", [
    (remote_fns.transposed, BASE.t()),
    (remote_fns.every_other, BASE[::2]),
    (torch.t, BASE.t()),
    (torch.narrow, BASE.narrow(1, 2, 3)),
], ids=["python-transposed", "python-step-slice", "builtin-transposed", "builtin-narrow"])
def test_non_contiguous_results(cluster, func, expected):
    args = (BASE, 1, 2, 3) if func is torch.narrow else (BASE,)
    assert_same(rpc.rpc_sync("worker2", func, args), expected)


@pytest.mark.parametrize("echo", ECHOES)
def test_a_view_sends_only_its_own_elements(cluster, echo):
    storage = torch.arange(100_000, dtype=torch.float32)
    view = storage[1000:1010]
    result = rpc.rpc_sync("worker1", ECHOES[echo], (view,))
    assert_same(result, view)
    assert result.untyped_storage().nbytes() == view.nbytes


SMALL_SHAPES = {
    "0-dim-float": lambda: torch.tensor(3.5),
    "0-dim-int": lambda: torch.tensor(-7),
    "0-dim-bool": lambda: torch.tensor(True),
    "empty-1d": lambda: torch.empty(0),
    "empty-2d": lambda: torch.empty(0, 3, dtype=torch.int32),
    "empty-middle-dim": lambda: torch.empty(2, 0, 4, dtype=torch.float64),
}


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_0_dim_and_empty(cluster, shape, echo):
    t = SMALL_SHAPES[shape]()
    assert_same(rpc.rpc_sync("worker1", ECHOES[echo], (t,)), t)


def test_0_dim_and_empty_together_with_others(cluster):
    values = (torch.tensor(1.0), torch.empty(0), torch.ones(2, 2), torch.empty(3, 0))
    assert_same(rpc.rpc_sync("worker1", remote_fns.identity, (values,)), values)


def test_the_same_tensor_twice(cluster):
    t = torch.arange(5.0)
    assert_same(rpc.rpc_sync("worker1", remote_fns.add, (t, t)), t + t)
    assert_same(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)


@pytest.fixture(scope="module")
def large():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16 * 2**20, generator=generator)  # 64 MiB of float32


@pytest.mark.parametrize("echo", ECHOES)
def test_64_mib_round_trip(cluster, large, echo):
    assert large.nbytes == 64 * 2**20
    assert_same(rpc.rpc_sync("worker1", ECHOES[echo], (large,)), large)


def test_64_mib_in_both_directions_at_once(cluster, large):
    futures = [rpc.rpc_async(dst, remote_fns.identity, (large,)) for dst in ("worker1", "worker2")]
    for result in torch.futures.wait_all(futures):
        assert_same(result, large)


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("tensor, message", [
    (torch.eye(3).to_sparse_csr(), "distgrad sends dense and sparse COO tensors only, got layout SparseCsr"),
    (torch.empty(2, device="meta"), "distgrad sends CPU tensors only, got a tensor on meta"),
    (torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8),
     "distgrad cannot send quantized tensors (dtype QUInt8)"),
], ids=["sparse-csr", "meta", "quantized"])
def test_tensors_that_cannot_travel_fail_on_the_caller(cluster, echo, tensor, message):
    with pytest.raises(ValueError) as excinfo:
        rpc.rpc_sync("worker1", ECHOES[echo], (tensor,))
    assert str(excinfo.value) == message


@pytest.mark.parametrize("echo", ECHOES)
def test_nested_tensor_fails_clearly(cluster, echo):
    nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    with pytest.raises((ValueError, TypeError), match="nested"):
        rpc.rpc_sync("worker1", ECHOES[echo], (nested,))


@pytest.mark.parametrize("echo", ECHOES)
def test_tensor_of_too_many_dimensions_fails_on_the_caller(cluster, echo):
    with pytest.raises(ValueError, match="distgrad cannot send a tensor of 65 dimensions \\(at most 64\\)"):
        rpc.rpc_sync("worker1", ECHOES[echo], (torch.ones([1] * 65),))


@pytest.mark.parametrize("func, args, message", [
    (remote_fns.reshape_to_dims, (65,), "distgrad cannot send a tensor of 65 dimensions (at most 64)"),
    (remote_fns.bits8_tensor, (), "distgrad cannot send tensors of dtype Bits8"),
], ids=["65-dims", "bits8"])
def test_reply_that_cannot_be_framed_is_an_error_reply(cluster, func, args, message):
    # No timeout: the caller must get an answer, not wait forever.
    with pytest.raises(ValueError) as excinfo:
        rpc.rpc_sync("worker1", func, args, timeout=0)
    assert str(excinfo.value).startswith(message)
    assert str(excinfo.value).endswith("(ValueError raised on worker 'worker1')")


def test_result_that_cannot_travel_fails_on_the_callee(cluster):
    with pytest.raises(ValueError) as excinfo:
        rpc.rpc_sync("worker1", torch.Tensor.to_sparse_csr, (torch.eye(2),))
    assert str(excinfo.value) == ("distgrad sends dense and sparse COO tensors only, got layout SparseCsr\n"
                                  "(ValueError raised on worker 'worker1')")
    assert_same(rpc.rpc_sync("worker1", torch.clone, (torch.eye(2),)), torch.eye(2))
