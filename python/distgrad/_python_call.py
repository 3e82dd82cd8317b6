"""How Python callables and their results travel: pickled by reference, with
tensors kept out of the pickle so that their bytes travel raw."""

import io
import pickle
import traceback

import torch


class _Pickler(pickle.Pickler):
    def __init__(self, file, tensors):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._tensors = tensors

    def persistent_id(self, obj):
        if isinstance(obj, torch.Tensor):
            self._tensors.append(obj)
            return len(self._tensors) - 1
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, tensors):
        super().__init__(file)
        self._tensors = tensors

    def persistent_load(self, pid):
        return self._tensors[pid]


def serialize(obj):
    """Returns (payload, tensors): obj pickled into a uint8 tensor, and the
    tensors it refers to."""
    buffer = io.BytesIO()
    tensors = []
    _Pickler(buffer, tensors).dump(obj)
    payload = torch.frombuffer(bytearray(buffer.getbuffer()), dtype=torch.uint8)
    return payload, tensors


def deserialize(payload, *tensors):
    return _Unpickler(io.BytesIO(payload.numpy().tobytes()), list(tensors)).load()


def decode_result(result):
    """Decodes the (payload, tensors...) tuple a Python call returns."""
    return deserialize(*result)


def run(payload, *tensors):
    """Runs a pickled (func, args, kwargs) on the callee. Returns
    (True, payload, tensors...) or, if anything raises, (False, type name,
    message) where the type name is the exception's own for Python built-in
    exceptions and RuntimeError otherwise."""
    try:
        func, args, kwargs = deserialize(payload, *tensors)
        result_payload, result_tensors = serialize(func(*args, **kwargs))
        return (True, result_payload, *result_tensors)
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the caller
        return (False, *_describe(error))


def _describe(error):
    """(type name, message) for the caller: built-in and distgrad exception
    types keep their name, others become RuntimeError naming their class."""
    cls = type(error)
    remote_traceback = "".join(traceback.format_exception(error)).rstrip()
    if cls.__module__ in ("builtins", "distgrad.errors"):
        return cls.__name__, f"{error}\n\nRemote traceback:\n{remote_traceback}"
    return "RuntimeError", f"{cls.__module__}.{cls.__qualname__}: {error}\n\nRemote traceback:\n{remote_traceback}"
