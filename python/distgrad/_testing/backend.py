"""How the processes of a Cluster join and leave their job by default:
through distgrad.rpc. A Cluster can be given another object with the same two
functions (a "module" or "module:attribute" name), which its worker processes
import by that name: tools/bench.py runs the same jobs on torch.distributed.rpc
that way."""

import importlib

import distgrad.rpc


def init(name, rank, world_size, init_method, timeout):
    """timeout: the default timeout of calls, in seconds (None: the backend's)."""
    distgrad.rpc.init_rpc(name, rank=rank, world_size=world_size, init_method=init_method,
                          timeout=timeout)


def shutdown(graceful, timeout):
    distgrad.rpc.shutdown(graceful=graceful, timeout=timeout)


def resolve(spec):
    """The object a "module" or "module:attribute" name designates."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module
