"""The scripted functions of ``digits`` for torch.distributed.rpc, which
``distgrad.examples.train --backend torch`` runs for the comparison.

torch's compiler wants the function an RPC runs, not its name, and the
callee finds it among the functions it has compiled itself: every worker of
a torch job imports this module before it serves calls.
"""

from typing import List

import torch
import torch.distributed.rpc as rpc
from torch import Tensor
from torch.distributed.rpc import RRef

from distgrad.examples.digits import make_parameter  # noqa: F401  (run by rpc.remote on the servers)


@torch.jit.script
def shard_forward(x: Tensor, weight: RRef[Tensor], bias: RRef[Tensor]) -> Tensor:
    return torch.relu(torch.addmm(bias.local_value(), x, weight.local_value()))


@torch.jit.script
def remote_shard(x: Tensor, weight: RRef[Tensor], bias: RRef[Tensor]) -> Tensor:
    return rpc.rpc_async(weight.owner_name(), shard_forward, (x, weight, bias)).wait()


@torch.jit.script
def hidden_forward(x: Tensor, weights: List[RRef[Tensor]], biases: List[RRef[Tensor]]) -> Tensor:
    futures = [torch.jit._fork(remote_shard, x, w, b) for w, b in zip(weights, biases)]
    return torch.cat([torch.jit._wait(f) for f in futures], dim=1)
