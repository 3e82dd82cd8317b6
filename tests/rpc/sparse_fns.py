"""Functions with sparse tensors the tests run on other workers."""

import torch

import distgrad.autograd as dist_autograd


def identity(x):
    return x


def double(x):
    return x * 2


def sparse_sum(x):
    return torch.sparse.sum(x)


def describe(x):
    return {"layout": str(x.layout), "coalesced": x.is_coalesced(), "nnz": x._nnz(), "dense": x.to_dense()}


def embedding(num, dim):
    torch.manual_seed(0)
    return torch.nn.Embedding(num, dim, sparse=True)


def weight_grad(context_id, module_rref):
    return dist_autograd.get_gradients(context_id)[module_rref.local_value().weight]
