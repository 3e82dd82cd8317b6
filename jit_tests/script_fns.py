"""TorchScript functions of the TorchScript tests. Workers find the ones
called remotely by qualified name (jit_tests.script_fns.<name>)."""

import time
from typing import Any, List, Tuple

import torch
from torch import Tensor

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc


@torch.jit.script
def local_add(t1: Tensor, t2: Tensor) -> Tensor:
    return torch.add(t1, t2)


@torch.jit.script
def remote_add(t1, t2, dst: str):
    return rpc.rpc_async(dst, "jit_tests.script_fns.local_add", (t1, t2)).wait()


@torch.jit.script
def fork_add(t1, t2, dst: str):
    fut = torch.jit._fork(remote_add, t1, t2, dst)
    return torch.jit._wait(fut)


@torch.jit.script
def nested_fork_add(t1, t2, dst: str):
    # A fork whose task forks again; the innermost task makes the RPC.
    fut = torch.jit._fork(fork_add, t1, t2, dst)
    return torch.jit._wait(fut)


@torch.jit.script
def many_forks_add(t1: Tensor, t2: Tensor, dsts: List[str]) -> Tensor:
    # Every fork is started before any is waited for, so all RPCs are in flight at once.
    futs = [torch.jit._fork(remote_add, t1, t2, dst) for dst in dsts]
    total = torch.zeros_like(t1)
    for fut in futs:
        result = torch.jit._wait(fut)
        assert isinstance(result, Tensor)
        total = total + result
    return total


@torch.jit.script
def two_rpcs(dst: str, t1: Tensor, t2: Tensor) -> Tuple[Tensor, Tensor]:
    # After the first wait() an asynchronous run resumes on another thread;
    # the second RPC must still be recorded in the context.
    res1 = rpc.rpc_async(dst, "jit_tests.script_fns.local_add", (t1, t1)).wait()
    assert isinstance(res1, Tensor)
    res2 = rpc.rpc_async(dst, "jit_tests.script_fns.local_add", (t2, t2)).wait()
    assert isinstance(res2, Tensor)
    return res1.sum(), res2.sum()


@torch.jit.script
def forked_two_rpcs(dst: str, t1: Tensor, t2: Tensor) -> Tuple[Tensor, Tensor]:
    fut = torch.jit._fork(two_rpcs, dst, t1, t2)
    return torch.jit._wait(fut)


# torch.jit._fork of a function without arguments trips an internal assert
# of TorchScript's fork inlining, hence the unused tensor argument.
@torch.jit.script
def current_context_id(unused: Tensor) -> int:
    return dist_autograd.current_context_id()


@torch.jit.script
def context_id_in_fork(unused: Tensor) -> int:
    fut = torch.jit._fork(current_context_id, unused)
    return torch.jit._wait(fut)


@torch.jit.script
def context_id_in_nested_fork(unused: Tensor) -> int:
    fut = torch.jit._fork(context_id_in_fork, unused)
    return torch.jit._wait(fut)


@torch.jit.script
def context_id_after_wait(dst: str) -> Tuple[int, int]:
    before = dist_autograd.current_context_id()
    rpc.rpc_async(dst, "aten::add", (torch.ones(1), torch.ones(1))).wait()
    return before, dist_autograd.current_context_id()


@torch.jit.script
def forked_context_id_after_wait(dst: str) -> Tuple[int, int]:
    fut = torch.jit._fork(context_id_after_wait, dst)
    return torch.jit._wait(fut)


@torch.jit.script
def dist_get_gradients(context_id: int):
    return dist_autograd.get_gradients(context_id)


@torch.jit.script
def dist_backward_script(context_id: int, loss: Tensor):
    dist_autograd.backward(context_id, [loss])


@torch.jit.script
def rpc_by_name(dst: str, func: str, t: Tensor):
    return rpc.rpc_async(dst, func, (t, t)).wait()


@torch.jit.script
def fire_and_forget(dst: str, t: Tensor) -> None:
    rpc.rpc_async(dst, "jit_tests.script_fns.local_add", (t, t))


@torch.jit.script
def rpc_sync_add(dst: str, t1: Tensor, t2: Tensor):
    return rpc.rpc_sync(dst, "aten::add", (t1, t2))


@torch.jit.ignore
def _sleep(seconds: float) -> None:
    time.sleep(seconds)


@torch.jit.script
def delayed_remote_add(t1: Tensor, t2: Tensor, dst: str, delay: float):
    _sleep(delay)
    return remote_add(t1, t2, dst)


# torch.jit._fork called from eager Python runs the function at once; from
# script it starts a task that outlives the call when its future is returned.
@torch.jit.script
def start_delayed_remote_add(t1: Tensor, t2: Tensor, dst: str, delay: float) -> torch.jit.Future[Any]:
    return torch.jit._fork(delayed_remote_add, t1, t2, dst, delay)


@torch.jit.script
def start_current_context_id(unused: Tensor) -> torch.jit.Future[int]:
    return torch.jit._fork(current_context_id, unused)
