"""async_execution functions the tests run on other workers."""

import threading
from typing import Any

import torch
from torch import Tensor

import distgrad.rpc as rpc
from tests import remote_fns


def _complete_later(future, value, delay):
    timer = threading.Timer(delay, lambda: future.set_result(value))
    timer.daemon = True
    timer.start()


@rpc.functions.async_execution
def delayed(value, delay):
    """value, after delay seconds, without holding a thread meanwhile."""
    future = torch.futures.Future()
    _complete_later(future, value, delay)
    return future


@rpc.functions.async_execution
def async_add(to, x, y):
    return rpc.rpc_async(to, torch.add, (x, y))


@rpc.functions.async_execution
def async_add_then_scale(to, x, y, factor):
    return rpc.rpc_async(to, torch.add, (x, y)).then(lambda fut: fut.wait() * factor)


@rpc.functions.async_execution
def async_chain(route, x):
    """Adds 1 on each worker of route, each hop an async_execution call."""
    if not route:
        future = torch.futures.Future()
        future.set_result(x)
        return future
    return rpc.rpc_async(route[0], async_chain, (route[1:], x + 1))


class AsyncMath:
    @staticmethod
    @rpc.functions.async_execution
    def add(to, x, y):
        return rpc.rpc_async(to, torch.add, (x, y))

    @classmethod
    @rpc.functions.async_execution
    def mul(cls, to, x, y):
        return rpc.rpc_async(to, torch.mul, (x, y))


@rpc.functions.async_execution
def not_a_future(x):
    return x


@rpc.functions.async_execution
def raises_first(message):
    raise ValueError(message)


@rpc.functions.async_execution
def nested_failure(to, message):
    return rpc.rpc_async(to, remote_fns.raise_value_error, (message,))


class Batch:
    """Answers every caller of add() together, once `size` calls have
    arrived: a callee that held a thread per waiting call would never get
    there with fewer threads than `size`."""

    def __init__(self, size):
        self.size = size
        self.total = 0
        self.arrived = 0
        self.future = torch.futures.Future()
        self.lock = threading.Lock()

    @rpc.functions.async_execution
    def add(self, x):
        with self.lock:
            future = self.future
            self.total += x
            self.arrived += 1
            if self.arrived == self.size:
                future.set_result(self.total)
        return future


_batch = None


def reset_batch(size):
    global _batch
    _batch = Batch(size)


@rpc.functions.async_execution
def add_to_batch(x):
    return Batch.add(_batch, x)


@rpc.functions.async_execution
@torch.jit.script
def script_async_add(to: str, x: Tensor, y: Tensor) -> torch.jit.Future[Any]:
    return rpc.rpc_async(to, "tests.script_fns.local_add", (x, y))
