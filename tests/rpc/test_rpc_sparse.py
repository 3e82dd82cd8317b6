"""Sparse COO tensors as RPC arguments, results, RRef values and distributed
gradients, with copy semantics."""

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests.rpc import sparse_fns

WORLD_SIZE = 2

INDICES = torch.tensor([[0, 1, 1, 3], [2, 0, 2, 1]])
VALUES = torch.tensor([1.5, -2.0, 3.0, 4.0])


def coalesced():
    return torch.sparse_coo_tensor(INDICES, VALUES, (4, 3), check_invariants=True).coalesce()


def uncoalesced():
    # Index (1, 2) twice.
    return torch.sparse_coo_tensor(torch.tensor([[1, 0, 1], [2, 2, 2]]), torch.tensor([1.0, 2.0, 3.0]), (2, 3),
                                   check_invariants=True)


def hybrid():
    return torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.arange(6.0).reshape(2, 3), (4, 3),
                                   check_invariants=True)


def assert_same_sparse(actual, expected):
    assert actual.layout == torch.sparse_coo
    assert actual.is_coalesced() == expected.is_coalesced()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert torch.equal(actual._indices(), expected._indices())
    assert torch.equal(actual._values(), expected._values())


@pytest.mark.parametrize("make", [coalesced, uncoalesced, hybrid,
                                  lambda: torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long),
                                                                  torch.zeros(0), (3, 3), check_invariants=True)],
                         ids=["coalesced", "uncoalesced", "hybrid", "empty"])
@pytest.mark.parametrize("dst", ["worker1", "worker0"])
def test_round_trip(cluster, make, dst):
    x = make()
    assert_same_sparse(rpc.rpc_sync(dst, sparse_fns.identity, (x,)), x)
    assert_same_sparse(rpc.rpc_sync(dst, torch.mul, (x, 2)), x * 2)


def test_copy_semantics(cluster):
    x = coalesced()
    back = rpc.rpc_sync("worker1", sparse_fns.identity, (x,))
    back._values().add_(100)
    assert torch.equal(x._values(), VALUES)


def test_in_containers_and_rrefs(cluster):
    x = coalesced()
    result = rpc.rpc_sync("worker1", sparse_fns.identity, ({"a": [x, (x, 1)]},))
    assert_same_sparse(result["a"][1][0], x)
    rref = rpc.remote("worker1", sparse_fns.double, (x,))
    assert_same_sparse(rref.to_here(), x * 2)
    info = rpc.rpc_sync("worker1", sparse_fns.describe, (uncoalesced(),))
    assert info["coalesced"] is False and info["nnz"] == 3
    assert torch.equal(info["dense"], uncoalesced().to_dense())


def test_sparse_gradient_of_a_leaf_sent_to_a_peer(cluster):
    x = coalesced().requires_grad_()
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync("worker1", sparse_fns.sparse_sum, (x * 3,))
        dist_autograd.backward(context_id, [loss])
        grad = dist_autograd.get_gradients(context_id)[x]
    expected_x = coalesced().requires_grad_()
    torch.sparse.sum(expected_x * 3).backward()
    assert grad.layout == torch.sparse_coo
    assert torch.equal(grad.to_dense(), expected_x.grad.to_dense())


def test_sparse_embedding_gradients_on_the_owner(cluster):
    module = rpc.remote("worker1", sparse_fns.embedding, (10, 3))
    indices = torch.tensor([1, 4, 4, 9])
    with dist_autograd.context() as context_id:
        out = module.rpc_sync().forward(indices)
        dist_autograd.backward(context_id, [(out * out).sum()])
        grad = rpc.rpc_sync("worker1", sparse_fns.weight_grad, (context_id, module))
    local = sparse_fns.embedding(10, 3)
    out = local(indices)
    (out * out).sum().backward()
    assert grad.layout == torch.sparse_coo
    assert torch.equal(grad.coalesce().to_dense(), local.weight.grad.coalesce().to_dense())


def test_other_sparse_layouts_are_refused(cluster):
    csr = coalesced().to_sparse_csr()
    with pytest.raises(ValueError, match="distgrad sends dense and sparse COO tensors only, got layout SparseCsr"):
        rpc.rpc_sync("worker1", sparse_fns.identity, (csr,))
