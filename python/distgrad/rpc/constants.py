"""Defaults of init_rpc and of the backend options, under the names
torch.distributed.rpc.constants gives them."""

__all__ = ["DEFAULT_INIT_METHOD", "DEFAULT_NUM_WORKER_THREADS", "DEFAULT_RPC_TIMEOUT_SEC", "UNSET_RPC_TIMEOUT"]

DEFAULT_INIT_METHOD = "env://"
DEFAULT_NUM_WORKER_THREADS = 16
DEFAULT_RPC_TIMEOUT_SEC = 60.0
# The timeout argument of a call that means "the default of the job".
UNSET_RPC_TIMEOUT = -1.0
