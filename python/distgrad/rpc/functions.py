"""Decorators for functions run through RPC."""

import functools

__all__ = ["async_execution"]


def async_execution(fn):
    """Marks ``fn`` as returning a ``torch.futures.Future`` when run by an RPC
    (``rpc_sync``, ``rpc_async``, ``remote`` or an RRef proxy): the callee
    replies with the future's value once it completes, and holds no thread
    while it waits. Use it inside ``@staticmethod`` or ``@classmethod``, and
    outside ``@torch.jit.script`` (a scripted function returning
    ``Future[T]``)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper._wrapped_async_rpc_function = fn
    return wrapper


class _AsyncReply:
    """Returned by a function run through RPC to say: reply with what
    ``future`` gives, when it completes (how an RRef proxy calls an
    async_execution method)."""

    __slots__ = ("future",)

    def __init__(self, future):
        self.future = future


def _is_async(fn):
    return getattr(fn, "_wrapped_async_rpc_function", None) is not None
