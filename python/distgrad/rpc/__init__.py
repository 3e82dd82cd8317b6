"""Remote procedure calls and remote references between the workers of a job.

``func`` may be a builtin torch operator (run by the dispatcher on the callee,
without Python), a TorchScript function (run by the TorchScript interpreter on
the callee, without the GIL), its qualified name as a string, or any Python
callable the callee can import (pickled by reference, run under the GIL).
"""

from . import constants, functions
from .api import (
    WorkerInfo, _set_rpc_timeout, debug_info, get_rpc_timeout, get_worker_info, get_worker_infos, init_rpc,
    remote, rpc_async, rpc_sync, shutdown,
)
from .options import BackendType, RpcBackendOptions, TensorPipeRpcBackendOptions
from .profiling import profile_serving
from .rref import RRef

__all__ = [
    "BackendType", "RRef", "RpcBackendOptions", "TensorPipeRpcBackendOptions", "WorkerInfo", "constants",
    "debug_info", "functions", "get_rpc_timeout", "get_worker_info", "get_worker_infos", "init_rpc",
    "profile_serving", "remote", "rpc_async", "rpc_sync", "shutdown",
]
