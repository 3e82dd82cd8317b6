"""Functions that tools/bench.py runs on remote workers.

They live in their own importable module, not in bench.py, because both RPC
runtimes refer to them by name: a Python function is pickled by reference
(module + name) and a TorchScript function by its qualified name
(``__torch__.bench_fns.local_add``). Functions defined in the script that is
run as ``__main__`` would not resolve to the same name on the callee.
Every worker process imports this module at start-up (bench.py does), so the
TorchScript functions are compiled before the first call reaches them.
"""

import torch


@torch.jit.script
def local_add(t1, t2):
    return torch.add(t1, t2)


def py_add(t1, t2):
    return torch.add(t1, t2)


def identity(t):
    """Returns its argument: the round trip then measures transport only."""
    return t
