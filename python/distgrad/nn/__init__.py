"""Neural network modules for distributed models: RemoteModule."""

from .remote_module import RemoteModule

__all__ = ["RemoteModule"]
