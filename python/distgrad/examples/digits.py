"""The model of ``distgrad.examples.train`` and its data.

The hidden layer of a two-layer perceptron is split by columns into shards,
one per parameter-server worker; each shard's weight and bias live on that
worker, behind RRefs. The trainer keeps the output layer. A forward pass is
one TorchScript function, run on the trainer inside a distributed autograd
context, that forks one RPC per shard with ``torch.jit._fork`` and
concatenates the shards' activations when they come back::

    trainer                                      ps1, ps2, ...
    hidden_forward(x, weights, biases)
      fork: remote_shard(x, w1, b1) ---rpc-----> shard_forward: relu(x @ w1 + b1)
      fork: remote_shard(x, w2, b2) ---rpc-----> shard_forward: relu(x @ w2 + b2)
      cat(wait(...), wait(...))
    logits = output layer (local)

The workers import this module when a call names one of its functions
(``distgrad.examples.digits.shard_forward``), so it must be importable
everywhere under that name. ``digits_torch`` has the same functions for
torch.distributed.rpc, for the comparison.
"""

from typing import List

import torch
from torch import Tensor

import distgrad.rpc as rpc
from distgrad.rpc import RRef

FEATURES = 64  # 8x8 images
CLASSES = 10


def load(seed, held_out_fraction=0.2):
    """(train_x, train_y, test_x, test_y): scikit-learn's handwritten digits
    (1797 images shipped with the package, nothing downloaded), pixels scaled
    to [0, 1], split at random by ``seed`` into training and held-out sets."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    held_out = int(len(x) * held_out_fraction)
    test, train = order[:held_out], order[held_out:]
    return x[train], y[train], x[test], y[test]


@torch.jit.script
def make_parameter(initial: Tensor) -> Tensor:
    """Runs on a parameter server (through ``rpc.remote``): a leaf tensor
    that requires grad, owned there. Scripted so that the RRef is typed
    ``RRef[Tensor]`` and can be passed to TorchScript functions."""
    return initial.clone().requires_grad_()


@torch.jit.script
def shard_forward(x: Tensor, weight: RRef[Tensor], bias: RRef[Tensor]) -> Tensor:
    """Runs on the owner of weight and bias: one shard of the hidden layer."""
    w = weight.local_value()
    b = bias.local_value()
    assert isinstance(w, Tensor) and isinstance(b, Tensor)
    return torch.relu(torch.addmm(b, x, w))


@torch.jit.script
def remote_shard(x: Tensor, weight: RRef[Tensor], bias: RRef[Tensor]) -> Tensor:
    out = rpc.rpc_async(weight.owner_name(), "distgrad.examples.digits.shard_forward", (x, weight, bias)).wait()
    assert isinstance(out, Tensor)
    return out


@torch.jit.script
def hidden_forward(x: Tensor, weights: List[RRef[Tensor]], biases: List[RRef[Tensor]]) -> Tensor:
    """The hidden layer: one forked RPC per shard, all in flight at once."""
    futures = [torch.jit._fork(remote_shard, x, w, b) for w, b in zip(weights, biases)]
    return torch.cat([torch.jit._wait(f) for f in futures], dim=1)
