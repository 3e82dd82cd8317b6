"""Functions that tools/bench.py runs on remote workers.

They live in their own importable module, not in bench.py, because both RPC
runtimes refer to them by name: a Python function is pickled by reference
(module + name) and a TorchScript function by its qualified name
(``__torch__.bench_fns.local_add``). Functions defined in the script that is
run as ``__main__`` would not resolve to the same name on the callee.
Every worker process imports this module at start-up (bench.py does), so the
TorchScript functions are compiled before the first call reaches them.
"""

import importlib

import torch


@torch.jit.script
def local_add(t1, t2):
    return torch.add(t1, t2)


def py_add(t1, t2):
    return torch.add(t1, t2)


def identity(t):
    """Returns its argument: the round trip then measures transport only."""
    return t


def chain_hop(rpc_module, route, t):
    """One hop of a chain of RPCs: doubles t (a tensor that requires grad,
    so the hop is recorded for distributed autograd), then, while ``route``
    (worker names) is not empty, passes the result on to ``route[0]`` with
    the rest of the route, and returns what comes back.

    ``rpc_module`` is the name of the rpc module of the job the call runs in
    ("distgrad.rpc" or "torch.distributed.rpc"): the next hop must go through
    the same runtime as the one that delivered this call, and the caller is
    the one that knows which it is (a worker process only ever initializes
    one). It is already imported in the worker, so the lookup is a
    dictionary access."""
    t = t * 2
    if not route:
        return t
    rpc = importlib.import_module(rpc_module)
    return rpc.rpc_sync(route[0], chain_hop, args=(rpc_module, route[1:], t))


class Accumulator:
    """A value kept on its owner and updated through an RRef proxy."""

    def __init__(self, shape):
        self.total = torch.zeros(shape)

    def add(self, t):
        self.total += t
        return self.total


def make_param(shape):
    """A leaf tensor that requires grad, held by its owner for an optimizer."""
    return torch.ones(shape, requires_grad=True)


# (time.time() just before init_rpc was called, just after it returned) in
# this worker; set by bench.py.
INIT_TIMES = None


def init_times():
    return INIT_TIMES
