"""The runtimes tools/bench.py compares, each as a backend of
distgrad._testing.Cluster (the job helper the tests use): an object with
init(name, rank, world_size, init_method, timeout) and shutdown(graceful,
timeout), which every process of a job, rank 0 and the worker processes,
imports by name ("bench_backends:torch") to join and leave its job.

The job's settings reach the worker processes through the environment (they
only get a name): BENCH_NUM_WORKER_THREADS for num_worker_threads."""

import os
import time
import warnings
from dataclasses import dataclass

import bench_fns

# Seconds. Generous: a job on a loaded 2-core machine can be slow to start,
# and a 16 MiB call on a slow runtime takes a while; a hang still ends.
RPC_TIMEOUT = 120.0
NUM_WORKER_THREADS = "BENCH_NUM_WORKER_THREADS"


@dataclass(frozen=True)
class Backend:
    name: str
    rpc_module: str
    autograd_module: str
    optim_module: str
    tensorpipe_options: dict

    def init(self, name, rank, world_size, init_method, timeout):
        """Joins the job, recording when (bench_fns.init_times)."""
        num_worker_threads = int(os.environ.get(NUM_WORKER_THREADS, "4"))
        called = time.time()
        if self.name == "distgrad":
            import distgrad.rpc as rpc

            rpc.init_rpc(name, rank=rank, world_size=world_size, init_method=init_method,
                         timeout=RPC_TIMEOUT, num_worker_threads=num_worker_threads)
        else:
            import torch.distributed.rpc as rpc

            # torch's own TensorPipe start-up (an all_gather_object on a bare
            # Gloo group) triggers this deprecation warning on every worker.
            warnings.filterwarnings("ignore", message="You are using a Backend .* as a ProcessGroup")
            options = rpc.TensorPipeRpcBackendOptions(
                init_method=init_method, num_worker_threads=num_worker_threads, rpc_timeout=RPC_TIMEOUT,
                **self.tensorpipe_options)
            rpc.init_rpc(name, rank=rank, world_size=world_size, backend=rpc.BackendType.TENSORPIPE,
                         rpc_backend_options=options)
        bench_fns.INIT_TIMES = (called, time.time())

    def shutdown(self, graceful, timeout):
        rpc = __import__(self.rpc_module, fromlist=["_"])
        rpc.shutdown(graceful=graceful, timeout=timeout)


distgrad = Backend("distgrad", "distgrad.rpc", "distgrad.autograd", "distgrad.optim", {})
torch = Backend("torch", "torch.distributed.rpc", "torch.distributed.autograd", "torch.distributed.optim", {})
# TensorPipe's defaults pick its shared-memory transport and cross-memory
# (process_vm_readv) channel between processes of one machine; this variant
# forces plain TCP sockets, the only path distgrad has, to tell the cost of
# the runtime apart from the cost of the wire.
torch_tcp = Backend("torch_tcp", "torch.distributed.rpc", "torch.distributed.autograd",
                    "torch.distributed.optim", {"_transports": ["uv"], "_channels": ["basic"]})

BACKENDS = {b.name: b for b in (distgrad, torch, torch_tcp)}
