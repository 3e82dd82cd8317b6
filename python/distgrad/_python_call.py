"""How Python callables, their results and Python values of RRefs travel:
pickled by reference, with tensors and RRefs kept out of the pickle (as
(payload, tensors, rrefs)) so that tensor bytes travel raw and RRefs are
accounted for by the runtime."""

import ctypes
import io
import pickle
import traceback

import torch

from . import _torch_private, errors
from .rpc import functions
from .rpc.rref import RRef, ScriptRRef

# What run() and finish() return, as (kind, ...); see operators/python/python_values.cpp.
_VALUE, _SERIALIZED, _FUTURE, _ERROR = range(4)


class _Pickler(pickle.Pickler):
    def __init__(self, file, tensors, rrefs):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._tensors = tensors
        self._rrefs = rrefs

    def persistent_id(self, obj):
        # Exact tensors only: a Parameter (or another subclass) pickles as
        # itself, around its data, which then comes here.
        if type(obj) is torch.Tensor:
            self._tensors.append(obj)
            index = len(self._tensors) - 1
            # The bytes travel detached: the flag travels here (not under
            # no_grad, where nothing is recorded either).
            return ("grad", index) if obj.requires_grad and torch.is_grad_enabled() else index
        if isinstance(obj, ScriptRRef):
            self._rrefs.append(obj._impl)
            return -len(self._rrefs)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, tensors, rrefs):
        super().__init__(file)
        self._tensors = tensors
        self._rrefs = rrefs

    def persistent_load(self, pid):
        if isinstance(pid, tuple):
            tensor = self._tensors[pid[1]]
            # Inside a distributed autograd context it already has its
            # grad_fn; elsewhere it becomes a leaf that requires grad.
            if not tensor.requires_grad:
                tensor.requires_grad_()
            return tensor
        if pid >= 0:
            return self._tensors[pid]
        return RRef._from_handle(self._rrefs[-pid - 1])


def serialize(obj):
    """Returns (payload, tensors, rrefs): obj pickled into a uint8 tensor, the
    tensors it refers to, and the handles of the RRefs it refers to."""
    buffer = io.BytesIO()
    tensors = []
    rrefs = []
    _Pickler(buffer, tensors, rrefs).dump(obj)
    payload = torch.frombuffer(bytearray(buffer.getbuffer()), dtype=torch.uint8)
    return payload, tuple(tensors), tuple(rrefs)


def deserialize(payload, tensors, rrefs):
    # The bytes of the uint8 tensor, copied without numpy (not a dependency).
    payload = payload.contiguous()
    data = ctypes.string_at(payload.data_ptr(), payload.numel())
    return _Unpickler(io.BytesIO(data), tensors, rrefs).load()


def decode_result(result):
    """Decodes the (payload, tensors, rrefs) a Python call returns."""
    return deserialize(*result)


def run(payload, tensors, rrefs, keep_value):
    """Runs a pickled (func, args, kwargs) on the callee. Returns the result
    as finish() does, or (_FUTURE, future) when func is marked
    async_execution: the reply then waits for the future."""
    try:
        func, args, kwargs = deserialize(payload, tensors, rrefs)
        result = func(*args, **kwargs)
        if functions._is_async(func) or isinstance(result, functions._AsyncReply):
            future = result.future if isinstance(result, functions._AsyncReply) else result
            if not isinstance(future, _torch_private.CFuture):  # torch.futures.Future, or what .then() returns
                raise TypeError(f"{getattr(func, '__qualname__', func)} is marked @async_execution and must "
                                f"return a torch.futures.Future, but returned {type(future).__name__}")
            return (_FUTURE, future)
        return finish(result, keep_value)
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the caller
        return (_ERROR, *_describe(error))


def finish(result, keep_value):
    """(_VALUE, result) to keep it (remote), (_SERIALIZED, payload, tensors,
    rrefs) to send it, or (_ERROR, type name, message) if it cannot be
    pickled."""
    if keep_value:
        return (_VALUE, result)
    try:
        return (_SERIALIZED, *serialize(result))
    except BaseException as error:  # noqa: BLE001
        return (_ERROR, *_describe(error))


def _describe(error):
    """(type name, message) for the caller (see errors.travelling_name)."""
    cls = type(error)
    remote_traceback = "".join(traceback.format_exception(error)).rstrip()
    name = errors.travelling_name(cls)
    if name is not None:
        return name, f"{error}\n\nRemote traceback:\n{remote_traceback}"
    return "RuntimeError", f"{cls.__module__}.{cls.__qualname__}: {error}\n\nRemote traceback:\n{remote_traceback}"
