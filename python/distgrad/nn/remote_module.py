"""RemoteModule: an ``nn.Module`` created and run on another worker, used
here as if it were local."""

import torch
import torch.nn as nn

from .. import rpc

__all__ = ["RemoteModule"]

# nn.Module methods that act on the local module's own parameters, buffers,
# submodules, hooks or device: a RemoteModule has none of those here.
_UNSUPPORTED = (
    "add_module", "apply", "bfloat16", "buffers", "children", "cpu", "cuda", "double", "float", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "type",
    "xpu", "zero_grad",
)
_PARAMETER_METHODS = ("parameters", "named_parameters")


class RemoteModule(nn.Module):
    """``module_cls(*args, **kwargs)`` created on the worker named by
    ``remote_device`` and called from here.

    ``remote_device`` is ``"<worker name>/<device>"``, ``"<worker name>"``
    or ``"rank:<rank>/<device>"``; the device must be ``cpu`` (the default),
    since distgrad moves no tensor to CUDA. The module is created
    asynchronously: an error raised by ``module_cls`` surfaces on first use.
    ``on`` (the worker's name, or its rank given as ``rank:<rank>``) and
    ``device`` say where it lives.

    ``forward`` (and calling the module) runs the remote module on its
    inputs and returns its output; ``forward_async`` returns a
    ``torch.futures.Future`` of it. Both take part in distributed autograd:
    inside ``distgrad.autograd.context()``, gradients reach the remote
    parameters, whose RRefs ``remote_parameters()`` returns for a
    ``DistributedOptimizer``. ``train()`` and ``eval()`` set the remote
    module's mode; methods that would act on local parameters, buffers,
    submodules or hooks raise ValueError.

    A RemoteModule may be an argument or result of any distgrad RPC, and
    keeps working on the worker that receives it; it cannot be pickled
    otherwise.
    """

    def __init__(self, remote_device, module_cls, args=(), kwargs=None):
        super().__init__()
        self.on, self.device = _parse_remote_device(remote_device)
        self.module_rref = rpc.remote(self.on, _create_module, args=(module_cls, tuple(args or ()), kwargs or {}))

    @staticmethod
    def init_from_module_rref(remote_device, module_rref):
        """A RemoteModule over an existing remote module: ``module_rref`` is
        an RRef to an ``nn.Module`` owned by the worker of ``remote_device``."""
        remote_module = RemoteModule.__new__(RemoteModule)
        nn.Module.__init__(remote_module)
        remote_module.on, remote_module.device = _parse_remote_device(remote_device)
        owner = module_rref.owner()
        if owner != _worker_info(remote_module.on):
            raise ValueError(f"RemoteModule: module_rref is owned by {owner.name}, "
                             f"not by the worker of remote_device {remote_device!r}")
        remote_module.module_rref = module_rref
        return remote_module

    def forward(self, *args, **kwargs):
        """The remote module's output for the inputs ``*args`` and
        ``**kwargs`` (what calling the module does)."""
        return self.forward_async(*args, **kwargs).wait()

    def forward_async(self, *args, **kwargs):
        """A ``torch.futures.Future`` of the remote module's output for the
        inputs ``*args`` and ``**kwargs``."""
        return rpc.rpc_async(self.module_rref.owner(), _forward, args=(self.module_rref, args, kwargs))

    def remote_parameters(self, recurse=True):
        """RRefs to the remote module's parameters (the Parameters
        themselves, on its worker), as ``parameters(recurse)`` lists them."""
        return rpc.rpc_sync(self.module_rref.owner(), _parameter_rrefs, args=(self.module_rref, recurse))

    def get_module_rref(self):
        """The RRef to the remote ``nn.Module``."""
        return self.module_rref

    def train(self, mode=True):
        """Sets the remote module (and its submodules) to training mode, or
        to evaluation mode if ``mode`` is False; returns self."""
        rpc.rpc_sync(self.module_rref.owner(), _set_training, args=(self.module_rref, mode))
        self.training = mode
        return self

    def extra_repr(self):
        """What the module's repr shows: its remote device."""
        return f"remote_device={self.remote_device!r}"

    @property
    def remote_device(self):
        """The remote device as a string: ``"worker1/cpu"``, ``"rank:1/cpu"``."""
        on = f"rank:{self.on}" if isinstance(self.on, int) else self.on
        return f"{on}/{self.device}"

    def __reduce_ex__(self, protocol):
        # The RPC pickler sends every RRef (instances of subclasses too) out
        # of band, without calling its __reduce_ex__; any other pickler calls
        # it, and _RpcOnlyRRef refuses.
        return RemoteModule.init_from_module_rref, (self.remote_device, _RpcOnlyRRef(self.module_rref))

    def __copy__(self):
        # copy.copy() would rebuild from __reduce_ex__ without pickling it.
        _refuse_pickling()


def _unsupported(name, hint):
    def method(self, *args, **kwargs):
        raise ValueError(f"RemoteModule does not support {name}(): the module lives on "
                         f"{self.module_rref.owner().name}{hint}")
    method.__name__ = name
    method.__doc__ = f"Not supported by RemoteModule: raises ValueError, whatever ``args`` and ``kwargs``{hint}."
    return method


for _name in _UNSUPPORTED:
    setattr(RemoteModule, _name, _unsupported(_name, ""))
for _name in _PARAMETER_METHODS:
    setattr(RemoteModule, _name, _unsupported(_name, "; use remote_parameters() for RRefs to its parameters"))


class _RpcOnlyRRef(rpc.RRef):
    """The RRef of a RemoteModule being pickled, which only a distgrad RPC
    may pickle."""

    def __init__(self, rref):
        self._impl = rref._impl  # the same reference, not a new one

    def __reduce_ex__(self, protocol):
        _refuse_pickling()


def _refuse_pickling():
    raise RuntimeError("a RemoteModule can only be pickled as part of a distgrad RPC (as an argument or "
                       "result of rpc_sync, rpc_async or remote), not by pickle, copy or torch.save")


def _parse_remote_device(remote_device):
    """(worker name or rank, device) of "<worker>/<device>", "<worker>" or
    "rank:<rank>/<device>"; the worker must be part of the job and the
    device a CPU."""
    if not isinstance(remote_device, str):
        raise TypeError(f"remote_device must be a string, got {type(remote_device).__name__}")
    on, _, device = remote_device.partition("/")
    device = device or "cpu"
    expected = "expected '<worker name>/<device>', '<worker name>' or 'rank:<rank>/<device>'"
    if not on or "/" in device:
        raise ValueError(f"could not parse remote_device {remote_device!r}: {expected}")
    if on.startswith("rank:"):
        try:
            on = int(on[len("rank:"):])
        except ValueError:
            raise ValueError(f"could not parse remote_device {remote_device!r}: the rank is not an integer; "
                             f"{expected}") from None
    _worker_info(on)
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"remote_device {remote_device!r}: invalid device {device!r} ({error})") from None
    if parsed.type != "cpu":
        raise ValueError(f"remote_device {remote_device!r}: device {device!r} is not supported; distgrad runs "
                         "modules on the CPU only (CUDA is not supported)")
    return on, device


def _worker_info(on):
    """The WorkerInfo of a worker name or rank; ValueError if the job has
    no such worker."""
    if isinstance(on, str):
        return rpc.get_worker_info(on)
    workers = rpc.get_worker_infos()
    if not 0 <= on < len(workers):
        raise ValueError(f"rank {on} is out of range for a job of {len(workers)} workers")
    return workers[on]


# On the owner -----------------------------------------------------------------


def _create_module(module_cls, args, kwargs):
    module = module_cls(*args, **kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"RemoteModule: {getattr(module_cls, '__qualname__', module_cls)}(*args, **kwargs) returned "
                         f"a {type(module).__qualname__} on {rpc.get_worker_info().name}, "
                         "expected a torch.nn.Module")
    return module


def _forward(module_rref, args, kwargs):
    return module_rref.local_value()(*args, **kwargs)


def _parameter_rrefs(module_rref, recurse):
    return [rpc.RRef(param) for param in module_rref.local_value().parameters(recurse)]


def _set_training(module_rref, mode):
    module_rref.local_value().train(mode)
