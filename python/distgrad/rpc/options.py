"""The options of init_rpc under torch's names: RpcBackendOptions, and
TensorPipeRpcBackendOptions and BackendType.TENSORPIPE for programs written
for torch.distributed.rpc. Every backend runs distgrad's own runtime, which
moves tensors between CPU memories only: device settings must stay empty."""

import enum
import math
import numbers

from . import constants

__all__ = ["BackendType", "RpcBackendOptions", "TensorPipeRpcBackendOptions"]


class BackendType(enum.Enum):
    """The ``backend`` of init_rpc. ``DISTGRAD`` (the default) takes any
    RpcBackendOptions; ``TENSORPIPE`` takes TensorPipeRpcBackendOptions, as
    in torch. Both run distgrad's runtime."""

    DISTGRAD = "DISTGRAD"
    TENSORPIPE = "TENSORPIPE"

    def __repr__(self):
        return f"BackendType.{self.name}"


# Timeouts longer than this (inf among them) mean none, like 0.
LONGEST_TIMEOUT = 1e9


def check_seconds(name, value):
    """Raises unless value is a timeout in seconds (0 or inf mean none)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds (0 means none), got {value}")


def seconds_or_none(value):
    """A checked timeout as the runtime takes it: 0 for none."""
    return 0.0 if value > LONGEST_TIMEOUT else float(value)


def check_init_method(value):
    """Raises unless value is a string (its form is checked by init_rpc)."""
    if not isinstance(value, str):
        raise TypeError(f"init_method must be a string, got {type(value).__name__}")


def check_num_worker_threads(value):
    """Raises unless value is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"num_worker_threads must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"num_worker_threads must be at least 1, got {value}")


def _refuse_devices(what, value):
    if value:
        raise ValueError(
            f"CUDA is not supported by distgrad: tensors travel between CPU memories only, "
            f"so {what} must be empty, got {value!r}"
        )


class RpcBackendOptions:
    """What init_rpc is given through ``rpc_backend_options``:
    ``rpc_timeout`` (seconds, default 60; 0 means none) bounds the rendezvous
    and is the default timeout of calls; ``init_method`` (default
    ``"env://"``) says where the workers meet (``env://``, ``tcp://host:port``
    or ``file:///path``); ``num_worker_threads`` (default 16) sizes the pool
    that runs the functions called here. The attributes may be changed until
    the options are passed to init_rpc."""

    _checks = {
        "rpc_timeout": lambda value: check_seconds("rpc_timeout", value),
        "init_method": check_init_method,
        "num_worker_threads": check_num_worker_threads,
    }

    def __init__(self, rpc_timeout=constants.DEFAULT_RPC_TIMEOUT_SEC, init_method=constants.DEFAULT_INIT_METHOD,
                 num_worker_threads=constants.DEFAULT_NUM_WORKER_THREADS):
        try:
            self.rpc_timeout = rpc_timeout
            self.init_method = init_method
            self.num_worker_threads = num_worker_threads
        except TypeError as error:
            # torch's options (a pybind11 class) word a wrong type this way.
            raise TypeError(f"{type(self).__name__}: incompatible constructor arguments: {error}") from None

    def __setattr__(self, name, value):
        check = self._checks.get(name)
        if check is not None:
            check(value)
        if name == "rpc_timeout":
            value = float(value)
        super().__setattr__(name, value)

    def __repr__(self):
        return (f"{type(self).__name__}(rpc_timeout={self.rpc_timeout}, init_method={self.init_method!r}, "
                f"num_worker_threads={self.num_worker_threads})")


class TensorPipeRpcBackendOptions(RpcBackendOptions):
    """torch's options, keyword-only as there: ``num_worker_threads``,
    ``rpc_timeout`` and ``init_method`` as in RpcBackendOptions.
    ``device_maps`` and ``devices`` (and ``set_device_map``,
    ``set_devices``) must stay empty: distgrad does not support CUDA.
    ``_transports`` and ``_channels`` choose among TensorPipe's transports;
    distgrad has one of its own, and ignores them."""

    _checks = {
        **RpcBackendOptions._checks,
        "device_maps": lambda value: _refuse_devices("device_maps", value),
        "devices": lambda value: _refuse_devices("devices", value),
    }

    def __init__(self, *, num_worker_threads=constants.DEFAULT_NUM_WORKER_THREADS,
                 rpc_timeout=constants.DEFAULT_RPC_TIMEOUT_SEC, init_method=constants.DEFAULT_INIT_METHOD,
                 device_maps=None, devices=None, _transports=None, _channels=None):
        super().__init__(rpc_timeout, init_method, num_worker_threads)
        self.device_maps = dict(device_maps or {})
        self.devices = list(devices or [])

    def set_device_map(self, to, device_map):
        """Refused unless ``device_map`` is empty (then it does nothing):
        device maps place the tensors sent to worker ``to`` on CUDA devices."""
        _refuse_devices(f"the device map to {to!r}", device_map)

    def set_devices(self, devices):
        """Refused unless ``devices`` is empty: devices are CUDA devices."""
        self.devices = list(devices)


def resolve(backend, rpc_backend_options):
    """The options init_rpc runs with: ``rpc_backend_options``, or the
    defaults of ``backend``. Checks their types as torch does."""
    if backend is not None and not isinstance(backend, BackendType):
        hint = ""
        if isinstance(backend, numbers.Integral):
            hint = (" (init_rpc takes torch's positional order: name, backend, rank, world_size; "
                    "pass rank= and world_size= by keyword)")
        raise TypeError(f"Argument backend must be a member of BackendType, got {backend!r}{hint}")
    if rpc_backend_options is not None and not isinstance(rpc_backend_options, RpcBackendOptions):
        raise TypeError("Argument rpc_backend_options must be an instance of RpcBackendOptions, "
                        f"got {type(rpc_backend_options).__name__}")
    if backend is BackendType.TENSORPIPE:
        if rpc_backend_options is None:
            return TensorPipeRpcBackendOptions()
        if not isinstance(rpc_backend_options, TensorPipeRpcBackendOptions):
            raise TypeError("`rpc_backend_options` must be a `TensorPipeRpcBackendOptions` for "
                            f"BackendType.TENSORPIPE, got {type(rpc_backend_options).__name__}")
    return rpc_backend_options if rpc_backend_options is not None else RpcBackendOptions()
