"""Exceptions raised by the distgrad runtime itself (not by user code), and
how exceptions travel between workers."""

import builtins

__all__ = ["DistError", "DistNetworkError", "DistTimeoutError"]


class DistError(RuntimeError):
    """A failure of the distgrad runtime."""


class DistNetworkError(DistError):
    """A peer is unreachable, has died, or has shut down."""


class DistTimeoutError(DistError, TimeoutError):
    """A call outlived its timeout."""


# How an exception travels to the worker that made the call: by the name of
# its class, which the caller raises again. This is the one table of those
# names, used by Python calls (distgrad._python_call) and by the C++ runtime
# (operators/python/error_bindings.cpp) in both directions: distgrad's own
# errors, and built-in Exception classes. Anything else, and BaseExceptions
# that are not Exceptions (a callee's SystemExit must not end the caller),
# travel as RuntimeError naming the original class in the message.
_DISTGRAD_ERRORS = {cls.__name__: cls for cls in (DistError, DistNetworkError, DistTimeoutError)}


def travelling_name(cls):
    """The name exceptions of class ``cls`` travel under, or None if they
    travel as RuntimeError naming their class."""
    if _DISTGRAD_ERRORS.get(cls.__name__) is cls:
        return cls.__name__
    if cls.__module__ == "builtins" and issubclass(cls, Exception):
        return cls.__name__
    return None


def class_for_travelling_name(name):
    """The class a caller raises an error that travelled under ``name`` as."""
    if name in _DISTGRAD_ERRORS:
        return _DISTGRAD_ERRORS[name]
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and travelling_name(cls) == name:
        return cls
    return RuntimeError
