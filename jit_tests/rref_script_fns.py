"""TorchScript functions that take, make and pass on RRefs. Workers find the
ones called remotely by qualified name (jit_tests.rref_script_fns.<name>)."""

from typing import Tuple

import torch
from torch import Tensor

import distgrad.rpc as rpc
from distgrad.rpc import RRef


@torch.jit.script
def rref_to_here(rref: RRef[Tensor]) -> Tensor:
    value = rref.to_here()
    assert isinstance(value, Tensor)
    return value


@torch.jit.script
def rref_local_value(rref: RRef[Tensor]) -> Tensor:
    value = rref.local_value()
    assert isinstance(value, Tensor)
    return value


@torch.jit.script
def rref_owner(rref: RRef[Tensor]) -> Tuple[str, bool, bool]:
    return rref.owner_name(), rref.is_owner(), rref.confirmed_by_owner()


@torch.jit.script
def remote_add(dst: str, t1: Tensor, t2: Tensor) -> RRef[Tensor]:
    return rpc.remote(dst, "jit_tests.script_fns.local_add", (t1, t2))


@torch.jit.script
def remote_add_to_here(dst: str, t1: Tensor, t2: Tensor) -> Tensor:
    rref = rpc.remote(dst, "jit_tests.script_fns.local_add", (t1, t2))
    value = rref.to_here()
    assert isinstance(value, Tensor)
    return value


@torch.jit.script
def fork_remote_add(dst: str, t1: Tensor, t2: Tensor) -> Tensor:
    fut = torch.jit._fork(remote_add_to_here, dst, t1, t2)
    return torch.jit._wait(fut)


@torch.jit.script
def fetch_elsewhere(dst: str, rref: RRef[Tensor]) -> Tensor:
    """Sends rref to dst, whose scripted rref_to_here fetches its value."""
    value = rpc.rpc_async(dst, "jit_tests.rref_script_fns.rref_to_here", (rref,)).wait()
    assert isinstance(value, Tensor)
    return value
