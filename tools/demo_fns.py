"""Functions the demo runs on its workers (imported there by module name)."""

import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc

torch.manual_seed(1)
# The second layer's weights live on worker1.
W1 = torch.randn(8, 1, requires_grad=True)


def mse(prediction, target):
    return ((prediction - target) ** 2).mean()


def second_layer_and_loss(hidden, target, loss_worker):
    return rpc.rpc_sync(loss_worker, mse, args=(hidden @ W1, target))


def step_second_layer(context_id, lr):
    grad = dist_autograd.get_gradients(context_id)[W1]
    with torch.no_grad():
        W1.sub_(lr * grad)
    return grad.norm().item()


@torch.jit.script
def local_add(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    return torch.add(t1, t2)


@torch.jit.script
def remote_add(t1, t2, dst: str):
    return rpc.rpc_async(dst, "tools.demo_fns.local_add", (t1, t2)).wait()


@torch.jit.script
def fork_add(t1, t2, dst: str):
    fut = torch.jit._fork(remote_add, t1, t2, dst)
    return torch.jit._wait(fut)
