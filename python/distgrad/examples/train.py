"""Trains a handwritten-digit classifier with worker processes on this
machine, with distgrad and then, for comparison, with torch.distributed.rpc.

    python -m distgrad.examples.train [--backend {distgrad,torch,both}] [--epochs E] [--workers W]
    torchrun --nproc_per_node=3 -m distgrad.examples.train [options]

The job has one trainer (rank 0) and W - 1 parameter servers. The hidden
layer of the model is split among the servers: each holds its shard's
weight and bias, created there with ``rpc.remote``. The trainer holds the
data (scikit-learn's digits, shipped with it; 20% held out) and the output
layer. Each step, inside a distributed autograd context::

    hidden = digits.hidden_forward(x, weights, biases)  # TorchScript: one torch.jit._fork per
                                                        # server, each an RPC to it
    loss = cross_entropy(output(hidden), y)
    dist_autograd.backward(context_id, [loss])          # gradients reach every server
    optimizer.step(context_id)                          # DistributedOptimizer: SGD on every owner

Without a launcher the program starts the W processes itself with
torch.multiprocessing, once per backend; under torchrun each process is
one worker and joins the job through torchrun's store (RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT), running the backends one after the other.
With ``--backend both`` the same training run (same data, initial
parameters and batches) is done with torch.distributed.rpc,
torch.distributed.autograd and torch.distributed.optim, and the times per
iteration are compared.
"""

import argparse
import ctypes
import importlib
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
import warnings

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from distgrad.examples import digits

BACKENDS = {
    # backend: (rpc module, distributed autograd module, optim module, module with hidden_forward)
    "distgrad": ("distgrad.rpc", "distgrad.autograd", "distgrad.optim", "distgrad.examples.digits"),
    "torch": ("torch.distributed.rpc", "torch.distributed.autograd", "torch.distributed.optim",
              "distgrad.examples.digits_torch"),
}


def worker_name(rank):
    return "trainer" if rank == 0 else f"ps{rank}"


def run_worker(rank, world_size, backend, init_method, config):
    """The whole life of one worker: joins the job, trains if it is rank 0
    (the servers only serve its calls), and shuts down once every worker is
    done. Returns rank 0's results (None elsewhere)."""
    if "OMP_NUM_THREADS" not in os.environ:
        # As torchrun does: one intra-op thread per process. The matrices are
        # small, and several processes share the machine's cores.
        torch.set_num_threads(1)
    rpc, dist_autograd, optim, model = (importlib.import_module(name) for name in BACKENDS[backend])
    if backend == "distgrad":
        rpc.init_rpc(worker_name(rank), rank=rank, world_size=world_size, init_method=init_method,
                     timeout=config.timeout)
    else:
        # torch's TensorPipe start-up warns about its own use of a Gloo group.
        warnings.filterwarnings("ignore", message="You are using a Backend .* as a ProcessGroup")
        options = rpc.TensorPipeRpcBackendOptions(init_method=init_method, rpc_timeout=config.timeout)
        rpc.init_rpc(worker_name(rank), rank=rank, world_size=world_size, rpc_backend_options=options)
    result = None
    if rank == 0:
        result = train(backend, rpc, dist_autograd, optim.DistributedOptimizer, model.hidden_forward,
                       [worker_name(r) for r in range(1, world_size)], config)
    rpc.shutdown()
    return result


class Model:
    """The model on the trainer: the hidden layer's shards on the servers
    (RRefs), the output layer here, and a DistributedOptimizer over both."""

    def __init__(self, rpc, dist_autograd, DistributedOptimizer, hidden_forward, servers, config):
        torch.manual_seed(config.seed)
        # The hidden layer as nn.Linear would start it, split by columns among the servers.
        hidden = nn.Linear(digits.FEATURES, config.hidden)
        weight_shards = hidden.weight.detach().t().tensor_split(len(servers), dim=1)
        bias_shards = hidden.bias.detach().tensor_split(len(servers))
        self.weights = [rpc.remote(s, digits.make_parameter, args=(w.contiguous(),))
                        for s, w in zip(servers, weight_shards)]
        self.biases = [rpc.remote(s, digits.make_parameter, args=(b.contiguous(),))
                       for s, b in zip(servers, bias_shards)]
        self.output = nn.Linear(config.hidden, digits.CLASSES)
        parameters = self.weights + self.biases + [rpc.RRef(p) for p in self.output.parameters()]
        self.optimizer = DistributedOptimizer(torch.optim.SGD, parameters, lr=config.lr, momentum=0.9)
        self.dist_autograd = dist_autograd
        self.hidden_forward = hidden_forward

    def step(self, x, y):
        """One training iteration on a batch; returns its loss."""
        with self.dist_autograd.context() as context_id:
            loss = F.cross_entropy(self.output(self.hidden_forward(x, self.weights, self.biases)), y)
            self.dist_autograd.backward(context_id, [loss])
            self.optimizer.step(context_id)
        return loss

    def accuracy(self, x, y):
        with torch.no_grad():
            logits = self.output(self.hidden_forward(x, self.weights, self.biases))
        return (logits.argmax(dim=1) == y).float().mean().item()


def train(backend, rpc, dist_autograd, DistributedOptimizer, hidden_forward, servers, config):
    """Runs on the trainer; returns the held-out accuracy, the time per
    iteration and the per-epoch history."""
    train_x, train_y, test_x, test_y = digits.load(config.seed)
    model = Model(rpc, dist_autograd, DistributedOptimizer, hidden_forward, servers, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(train_x), generator=shuffle)
        loss_sum, steps = 0.0, 0
        start = time.perf_counter()
        for batch in order.split(config.batch_size):
            loss_sum += model.step(train_x[batch], train_y[batch]).item()
            steps += 1
        seconds = time.perf_counter() - start
        history.append({"loss": loss_sum / steps, "accuracy": model.accuracy(test_x, test_y), "seconds": seconds, "steps": steps})
        print(f"[{backend}] epoch {epoch + 1}/{config.epochs}: train loss {history[-1]['loss']:.4f}  "
              f"held-out accuracy {history[-1]['accuracy']:.4f}  ({1000 * seconds / steps:.2f} ms/iter)",
              flush=True)
    # The first epoch includes TorchScript's warm-up (the profiling executor
    # optimizes a function after its first runs): leave it out when there are more.
    timed = history[1:] or history
    per_iteration = sum(h["seconds"] for h in timed) / sum(h["steps"] for h in timed)
    result = {"backend": backend, "accuracy": history[-1]["accuracy"], "seconds_per_iteration": per_iteration,
              "history": history}
    print(f"[{backend}] held-out accuracy {result['accuracy']:.4f} ({len(test_y)} images) after "
          f"{config.epochs} epoch{'s' if config.epochs > 1 else ''}; {1000 * per_iteration:.2f} ms per iteration"
          f"{' (first epoch left out)' if len(history) > 1 else ''}", flush=True)
    return result


# --- Starting the workers ------------------------------------------------------

def launch(backend, config):
    """Starts ``config.workers`` processes (spawned) that run one job of
    ``backend`` on a free port of 127.0.0.1, and returns rank 0's results.
    Raises the first worker's error with its traceback, or TimeoutError after
    ``config.timeout`` seconds; no process is left running either way."""
    results = mp.get_context("spawn").SimpleQueue()
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    job = mp.start_processes(_spawned_worker, args=(config.workers, backend, init_method, config, results),
                             nprocs=config.workers, join=False, start_method="spawn")
    deadline = time.monotonic() + config.timeout
    try:
        # join() raises when a worker fails, after terminating the others.
        while not job.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {backend} job did not finish within {config.timeout} s")
    finally:
        for process in job.processes:
            if process.is_alive():
                process.terminate()
        for process in job.processes:
            process.join()
    return results.get()


def _spawned_worker(rank, world_size, backend, init_method, config, results):
    _exit_with_parent()
    result = run_worker(rank, world_size, backend, init_method, config)
    if rank == 0:
        results.put(result)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_with_parent():
    """A worker ends when the launcher does, even if the launcher is killed."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


# --- The program -------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m distgrad.examples.train",
                                     description=__doc__.splitlines()[0] + " " + __doc__.splitlines()[1])
    parser.add_argument("--backend", choices=["distgrad", "torch", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3,
                        help="processes in the job: one trainer and WORKERS - 1 parameter servers "
                             "(under torchrun: its number of processes)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=100.0,
                        help="seconds a job may take; also the RPC timeout")
    config = parser.parse_args(argv)
    if config.epochs < 1 or config.workers < 2 or config.hidden < config.workers - 1:
        parser.error("--epochs must be at least 1, --workers at least 2, --hidden at least --workers - 1")
    return config


def main(argv=None):
    """Runs the program; returns rank 0's results per backend ({} on the
    other ranks under torchrun)."""
    config = parse_args(argv)
    if importlib.util.find_spec("sklearn") is None:
        raise SystemExit("distgrad.examples.train needs scikit-learn, which ships its data set: "
                         "pip install scikit-learn (or pip install 'distgrad[examples]')")
    backends = ["distgrad", "torch"] if config.backend == "both" else [config.backend]
    under_launcher = "RANK" in os.environ and "WORLD_SIZE" in os.environ  # torchrun, or the like
    if under_launcher:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if world_size < 2:
            raise SystemExit("needs at least 2 processes (torchrun --nproc_per_node=3)")
    results = {}
    for backend in backends:
        if under_launcher:
            result = run_worker(rank, world_size, backend, "env://", config)
        else:
            result = launch(backend, config)
        if result is not None:
            results[backend] = result
    if len(results) == 2:
        ratio = results["torch"]["seconds_per_iteration"] / results["distgrad"]["seconds_per_iteration"]
        verdict = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
        print(f"distgrad {1000 * results['distgrad']['seconds_per_iteration']:.2f} ms/iter, "
              f"torch.distributed.rpc {1000 * results['torch']['seconds_per_iteration']:.2f} ms/iter: "
              f"{verdict} than torch.distributed.rpc", flush=True)
    return results


if __name__ == "__main__":
    main()
