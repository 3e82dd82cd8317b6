"""Defaults of init_rpc and of the backend options, under the names
torch.distributed.rpc.constants gives them."""

__all__ = ["DEFAULT_INIT_METHOD", "DEFAULT_NUM_WORKER_THREADS", "DEFAULT_RPC_TIMEOUT_SEC", "UNSET_RPC_TIMEOUT"]

DEFAULT_INIT_METHOD = "env://"
"""Where the workers meet unless told otherwise: the address in the
environment variables MASTER_ADDR and MASTER_PORT."""

DEFAULT_NUM_WORKER_THREADS = 16
"""The size of the pool that runs the functions a worker is called with."""

DEFAULT_RPC_TIMEOUT_SEC = 60.0
"""Seconds: the bound of the rendezvous, and the default timeout of calls."""

UNSET_RPC_TIMEOUT = -1.0
"""The ``timeout`` of a call that means "the default of the job" (see
``get_rpc_timeout``)."""
