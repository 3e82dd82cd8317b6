"""Profiler events of distgrad calls: while a torch profiler records on the
calling thread, each RPC, remote(), to_here() and distributed backward pass
is a record_function span named after the call, e.g.
``rpc_sync#aten::add(worker0 -> worker1)``."""

import contextlib

import torch

from .. import _C, _torch_private

__all__ = ["profile_serving"]


def enabled():
    return _torch_private.profiler_enabled()


def func_name(func):
    """How a call names func: the operator ("aten::add"), the TorchScript
    function's qualified name, the name given, or the Python qualname."""
    if isinstance(func, str):
        return func
    inner = getattr(func, "_wrapped_async_rpc_function", None)
    if isinstance(inner, torch.jit.ScriptFunction):
        func = inner
    if isinstance(func, torch.jit.ScriptFunction):
        return func.qualified_name
    builtin = _torch_private.find_builtin(func)
    if builtin is not None:
        return builtin
    return getattr(func, "__qualname__", type(func).__name__)


def span(name):
    """A record_function span (enter it with `with`)."""
    return torch.autograd.profiler.record_function(name)


@contextlib.contextmanager
def profile_serving():
    """Within this block, the requests this worker serves are recorded by the
    profiler running on the calling thread (start it first), each as a span
    ``rpc#<target>(<caller> -> <this worker>)`` around its execution::

        with torch.profiler.profile() as prof, rpc.profile_serving():
            ...  # serve for a while

    torch's profilers record the thread that started them and the work it
    hands on; requests run on distgrad's own threads, hence this block."""
    _C._agent_serve_with_this_thread_state(True)
    try:
        yield
    finally:
        _C._agent_serve_with_this_thread_state(False)
