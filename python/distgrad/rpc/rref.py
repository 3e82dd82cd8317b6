"""Remote references: a value that lives on one worker (its owner) and
references to it that other workers hold, use, and pass on."""

from typing import Any

import torch

from .. import _C, _torch_private
from .. import autograd as dist_autograd
from . import api, functions, profiling

__all__ = ["RRef"]


class ScriptRRef:
    """An RRef as TorchScript sees it: a handle (``torch.classes.dist_rpc.RRef``)
    and the methods a scripted function may call. ``RRef`` adds the rest for
    Python; TorchScript gives Python ``RRef`` objects back."""

    def __init__(self, handle: torch.classes.dist_rpc.RRef):
        self._impl = handle

    def to_here(self, timeout: float = -1.0) -> Any:
        return self._impl.to_here(timeout)

    def local_value(self) -> Any:
        return self._impl.local_value()

    def is_owner(self) -> bool:
        return self._impl.is_owner()

    def owner_name(self) -> str:
        return self._impl.owner_name()

    def confirmed_by_owner(self) -> bool:
        return self._impl.confirmed_by_owner()


torch.jit.script(ScriptRRef)


class RRef(ScriptRRef):
    """A reference to a value owned by one worker of the job.

    ``RRef(value)`` makes this worker the owner of ``value``; ``remote()``
    returns RRefs owned by the callee. An RRef may travel as an argument or
    result of any RPC (also inside lists, dicts and objects) and stays valid
    there; the owner deletes the value once no worker holds a reference any
    more. ``RRef[T]`` may be used as a type hint, also in TorchScript.
    ``type_hint`` is accepted for torch's signature and not used."""

    def __init__(self, value, type_hint=None):  # noqa: ARG002 - torch's signature
        self._impl = _C._rref_create(value)

    @classmethod
    def _from_handle(cls, handle):
        rref = cls.__new__(cls)
        rref._impl = handle
        return rref

    def __class_getitem__(cls, item):
        return cls

    def is_owner(self) -> bool:
        """Whether this worker owns the value."""
        return _C._rref_is_owner(self._impl)

    def owner(self):
        """The WorkerInfo of the owner."""
        return api._worker_of_rank(_C._rref_owner_rank(self._impl))

    def owner_name(self) -> str:
        """The name of the owner (``owner().name``)."""
        return self.owner().name

    def confirmed_by_owner(self) -> bool:
        """Whether the owner is known to hold the value for this reference
        (always true on the owner)."""
        return _C._rref_confirmed(self._impl)

    def local_value(self):
        """The value itself; only on the owner. Waits until a ``remote()``
        call has created it, and raises the error that call raised."""
        return _C._rref_local_value(self._impl)

    def to_here(self, timeout: float = -1.0):
        """A copy of the value fetched from its owner (on the owner, the value
        itself). ``timeout`` in seconds: -1 means the RPC default, 0 none."""
        if profiling.enabled() and not self.is_owner():
            with profiling.span(f"rref_to_here#({api.get_worker_info().name} -> {self.owner_name()})"):
                return _C._rref_to_here(self._impl, float(timeout))
        return _C._rref_to_here(self._impl, float(timeout))

    def rpc_sync(self, timeout: float = -1.0):
        """A proxy that runs methods of the value on its owner and returns
        their results: ``rref.rpc_sync().forward(x)``. Each call has
        ``timeout`` seconds (-1: the RPC default, 0: none)."""
        return _Proxy(self, api.rpc_sync, timeout)

    def rpc_async(self, timeout: float = -1.0):
        """Like rpc_sync() (the same ``timeout``), but each call returns a
        torch.futures.Future."""
        return _Proxy(self, api.rpc_async, timeout)

    def remote(self, timeout: float = -1.0):
        """Like rpc_sync() (the same ``timeout``), but each call returns an
        RRef to its result, owned by this RRef's owner."""
        return _Proxy(self, api.remote, timeout)

    def backward(self, dist_autograd_ctx_id: int = -1, retain_graph: bool = False):
        """Runs backward from the value (a scalar tensor) on its owner: a
        local backward pass if ``dist_autograd_ctx_id`` is -1 (only on the
        owner), else the distributed backward pass of that context.
        ``retain_graph=True`` keeps the graph for another pass."""
        if self.is_owner():
            _backward(self.local_value(), dist_autograd_ctx_id, retain_graph)
        elif dist_autograd_ctx_id == -1:
            raise RuntimeError("the RRef is owned by another worker: backward() needs the "
                               "dist_autograd_ctx_id of a distributed autograd context")
        else:
            api.rpc_sync(self.owner(), _backward_on_owner, args=(self, dist_autograd_ctx_id, retain_graph))

    def __repr__(self):
        kind = "owner" if self.is_owner() else "user"
        rank = _C._rref_owner_rank(self._impl)
        try:
            owner = repr(api._worker_of_rank(rank).name)
        except RuntimeError:  # the job has shut down
            owner = f"rank {rank}"
        return f"RRef(id={_C._rref_id(self._impl)}, owner={owner}, {kind})"

    def __reduce_ex__(self, protocol):
        raise RuntimeError("an RRef can only be pickled as part of a distgrad RPC (as an argument or "
                           "result of rpc_sync, rpc_async or remote), not by pickle or torch.save")


# TorchScript knows RRef as ScriptRRef, and gives ScriptRRef objects to Python as RRef.
_torch_private.add_script_class(RRef, _torch_private.script_class_of(ScriptRRef))


class _Proxy:
    """Calls methods of an RRef's value on its owner through one RPC kind."""

    __slots__ = ("_rref", "_rpc", "_timeout")

    def __init__(self, rref, rpc, timeout):
        self._rref = rref
        self._rpc = rpc
        self._timeout = timeout

    def __getattr__(self, name):
        def method(*args, **kwargs):
            return self._rpc(self._rref.owner(), _invoke_method, args=(self._rref, name, args, kwargs),
                             timeout=self._timeout)
        return method


def _invoke_method(rref, name, args, kwargs):
    """On the owner: runs a method of rref's value for a proxy."""
    method = getattr(rref.local_value(), name)
    result = method(*args, **kwargs)
    if functions._is_async(method):
        return functions._AsyncReply(result)
    return result


def _backward(value, context_id, retain_graph):
    if not isinstance(value, torch.Tensor):
        raise RuntimeError(f"RRef.backward() needs the value to be a tensor, got {type(value).__name__}")
    if context_id == -1:
        torch.autograd.backward(value, retain_graph=retain_graph)
    else:
        dist_autograd.backward(context_id, [value], retain_graph=retain_graph)


def _backward_on_owner(rref, context_id, retain_graph):
    _backward(rref.local_value(), context_id, retain_graph)
