"""Every private torch Python API distgrad uses, and only here: checked
against torch 2.13.0, so that a torch upgrade is a change in one place (the
C++ runtime's are in operators/common/torch_private.h)."""

import torch
import torch.jit._builtins
import torch.jit._state

CHECKED_AGAINST = "2.13"

if not torch.__version__.startswith(CHECKED_AGAINST + "."):
    raise ImportError(f"distgrad was checked against torch {CHECKED_AGAINST}, found torch {torch.__version__}; "
                      "check distgrad/_torch_private.py against it first")


def register_builtin(fn, op_name):
    """Makes TorchScript compile calls of Python function ``fn`` to operator
    ``op_name`` (how ``rpc_async`` and ``backward`` work in scripted code)."""
    torch.jit._builtins._register_builtin(fn, op_name)


def find_builtin(fn):
    """The operator name TorchScript compiles ``fn`` to (``torch.add`` ->
    ``aten::add``), or None."""
    return torch.jit._builtins._find_builtin(fn)


def profiler_enabled():
    """Whether a torch profiler is recording on this thread."""
    return torch.autograd._profiler_enabled()


def script_class_of(cls):
    """The TorchScript class compiled for Python class ``cls``, or None."""
    return torch.jit._state._get_script_class(cls)


def add_script_class(cls, script_class):
    """Lets objects of Python class ``cls`` (a subclass of the class
    ``script_class`` was compiled from) pass where TorchScript expects
    ``script_class``."""
    torch.jit._state._add_script_class(cls, script_class)


# The C++ future class behind torch.futures.Future and what .then() returns.
CFuture = torch._C.Future
