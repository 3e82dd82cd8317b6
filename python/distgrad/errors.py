"""Exceptions raised by the distgrad runtime itself (not by user code)."""


class DistError(RuntimeError):
    """A failure of the distgrad runtime."""


class DistNetworkError(DistError):
    """A peer is unreachable, has died, or has shut down."""


class DistTimeoutError(DistError, TimeoutError):
    """A call outlived its timeout."""
