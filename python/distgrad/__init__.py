"""distgrad: distributed autograd for PyTorch over its own RPC runtime,
usable from eager Python and from TorchScript."""

import torch  # noqa: F401  (loads libtorch before the extension)

from .errors import DistError, DistNetworkError, DistTimeoutError
from . import _C  # noqa: F401  (registers the dist_autograd and dist_rpc operators)
from . import autograd, nn, optim, rpc

__all__ = ["DistError", "DistNetworkError", "DistTimeoutError", "autograd", "nn", "optim", "rpc"]
