"""Distributed autograd: gradients of computations that cross RPCs.

Inside ``with context() as context_id:``, RPCs record their send/recv
functions in the context on every worker they reach; ``backward`` runs the
backward pass across all of them and each worker's leaf gradients land in
its own copy of the context, read with ``get_gradients``.

``backward``, ``get_gradients`` and ``current_context_id`` also compile, in
``@torch.jit.script`` functions, to the operators ``dist_autograd::dist_backward``,
``dist_autograd::get_gradients`` and ``dist_autograd::current_context_id``.
"""

from typing import Dict, List

import torch

from . import _C, _torch_private

__all__ = ["context", "backward", "get_gradients", "current_context_id", "is_available", "debug_info"]


class context:
    """Creates a distributed autograd context, makes it current on this
    thread, yields its id, and releases it here and on every worker it
    reached when the block exits (also by an exception).

    Example::

        with distgrad.autograd.context() as context_id:
            loss = distgrad.rpc.rpc_sync("worker1", torch.add, args=(t1, t2)).sum()
            distgrad.autograd.backward(context_id, [loss])
            grads = distgrad.autograd.get_gradients(context_id)
    """

    def __enter__(self) -> int:
        self.context_id = _C._enter_context()
        return self.context_id

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        _C._exit_context(self.context_id)
        return False


def backward(context_id: int, roots: List[torch.Tensor], retain_graph: bool = False,
             timeout: float = -1.0) -> None:
    """Runs the distributed backward pass of ``context_id`` from ``roots``
    (scalar tensors that require grad) and returns when it has finished on
    every worker. Gradients accumulate in the context of each worker, never
    in ``.grad``. With ``retain_graph=True`` the graph can be run again.
    Every gradient message of the pass must be answered within ``timeout``
    seconds (-1: the RPC default, 0: no limit), or the pass fails with
    DistTimeoutError naming the worker that did not answer."""
    timeout = float(timeout)
    if _torch_private.profiler_enabled():
        with torch.autograd.profiler.record_function(f"dist_autograd.backward#context {context_id}"):
            _C._backward(context_id, list(roots), retain_graph, timeout)
    else:
        _C._backward(context_id, list(roots), retain_graph, timeout)


def get_gradients(context_id: int) -> Dict[torch.Tensor, torch.Tensor]:
    """The gradients this worker holds in ``context_id``, keyed by leaf tensor."""
    return _C._get_gradients(context_id)


def current_context_id() -> int:
    """The id of the context current on this thread, or -1."""
    return _C._current_context_id()


def is_available() -> bool:
    """True: distgrad always has distributed autograd (torch's function says
    whether torch was built with it)."""
    return True


def debug_info() -> Dict[str, int]:
    """Counters of this worker: ``num_autograd_contexts`` (live contexts)
    and ``num_current_backward_passes``."""
    return dict(_C._debug_info())


# In scripted code these names compile to the operators.
_torch_private.register_builtin(backward, "dist_autograd::dist_backward")
_torch_private.register_builtin(get_gradients, "dist_autograd::get_gradients")
_torch_private.register_builtin(current_context_id, "dist_autograd::current_context_id")
