"""Side-by-side benchmark of distgrad.rpc and torch.distributed.rpc (TensorPipe).

    .venv/bin/python tools/bench.py [--iters N] [--only NAME ...] [--json PATH]
                                    [--backend distgrad|torch|torch_tcp ...] [--markdown]

Every measurement is a function registered with @measurement. It runs inside
rank 0 of a job of local worker processes and receives an ``Api``: the rpc
module of one backend (``rpc_sync``, ``rpc_async``, ...) plus the names of
the workers. The same function runs once on a distgrad job and once on a
torch.distributed.rpc job; the other ranks only serve requests. Results are
printed side by side with the ratio torch/distgrad of the medians (above 1:
distgrad is faster).

Adding a row: write a function ``fn(api, iters) -> list of ns`` (use
``time_calls``) and decorate it with ``@measurement(name, title, ...)``.
``world_size`` picks the size of the job it runs in: measurements with the
same world size share one job per backend. Functions that must run on the
callee go in tools/bench_fns.py (see there why).
"""

import argparse
import importlib
import itertools
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import queue
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

import torch

# tools/ is sys.path[0] when this file runs as a script; rank 0 of a job (a
# spawned process) inherits that path, and its Cluster puts tools/ on the
# workers' PYTHONPATH: every process imports the same modules.
import bench_fns
from bench_backends import BACKENDS, NUM_WORKER_THREADS, RPC_TIMEOUT

from distgrad._testing import Cluster

# Upper bound on one job (start-up, all its measurements, shutdown).
JOB_TIMEOUT = 1800.0


# Where bench_fns and bench_backends live: the root of every job's workers.
TOOLS = os.path.dirname(os.path.abspath(__file__))


def worker_name(rank):
    return f"worker{rank}"


# --------------------------------------------------------------------------
# Backends: how a process joins a job, and which modules a measurement uses.


DEFAULT_BACKENDS = ("distgrad", "torch")
REFERENCE = "distgrad"  # ratios are <other backend>/distgrad


class Api:
    """What a measurement sees: the calls of one backend's rpc module, with
    the same signatures on both (rpc_sync(to, func, args, kwargs, timeout),
    rpc_async(...)), the worker names, and its distributed autograd module."""

    def __init__(self, backend, rpc, world_size):
        self.backend = backend.name
        self.rpc = rpc
        # "distgrad.rpc" or "torch.distributed.rpc": passed to functions run
        # on other workers that make RPCs of their own (bench_fns.chain_hop).
        self.rpc_module = rpc.__name__
        self.rpc_sync = rpc.rpc_sync
        self.rpc_async = rpc.rpc_async
        self.world_size = world_size
        self.workers = [worker_name(r) for r in range(world_size)]
        self._autograd_module = backend.autograd_module
        self._optim_module = backend.optim_module

    @property
    def autograd(self):
        """distgrad.autograd or torch.distributed.autograd."""
        return importlib.import_module(self._autograd_module)

    @property
    def optim(self):
        """distgrad.optim or torch.distributed.optim."""
        return importlib.import_module(self._optim_module)


# --------------------------------------------------------------------------
# The registry of measurements.


@dataclass(frozen=True)
class Measurement:
    name: str
    title: str
    fn: Callable  # (api, iters) -> list of per-iteration durations in ns
    world_size: int
    iters_scale: float  # this measurement runs max(MIN_ITERS, iters_scale * --iters) iterations
    bytes_per_iter: Optional[int]  # bytes moved per iteration, both directions, for MB/s

    def iterations(self, iters):
        """0 for rows that measure once, whatever --iters says."""
        return max(MIN_ITERS, round(iters * self.iters_scale)) if self.iters_scale else 0


MIN_ITERS = 10
MEASUREMENTS = {}


def measurement(name, title, world_size=2, iters_scale=1.0, bytes_per_iter=None):
    """Registers fn(api, iters) as a row of the table."""

    def register(fn):
        if name in MEASUREMENTS:
            raise ValueError(f"measurement {name!r} is registered twice")
        MEASUREMENTS[name] = Measurement(name, title, fn, world_size, iters_scale, bytes_per_iter)
        return fn

    return register


def time_calls(call, iters, warmup=None):
    """Runs call() ``warmup`` times untimed (default: a tenth of iters, at
    least 5), then ``iters`` times, and returns each duration in ns."""
    if warmup is None:
        warmup = max(5, iters // 10)
    for _ in range(warmup):
        call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iters):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


# --------------------------------------------------------------------------
# Measurements. Each runs in rank 0; worker1 is the peer.

SMALL = (3, 3)
BULK_BYTES = 16 * 1024 * 1024


@measurement("add_builtin", "rpc_sync torch.add, 3x3 float")
def add_builtin(api, iters):
    t = torch.ones(SMALL)
    return time_calls(lambda: api.rpc_sync(api.workers[1], torch.add, args=(t, t)), iters)


@measurement("add_script", "rpc_sync TorchScript local_add, 3x3 float")
def add_script(api, iters):
    t = torch.ones(SMALL)
    return time_calls(lambda: api.rpc_sync(api.workers[1], bench_fns.local_add, args=(t, t)), iters)


@measurement("add_python", "rpc_sync Python py_add, 3x3 float")
def add_python(api, iters):
    t = torch.ones(SMALL)
    return time_calls(lambda: api.rpc_sync(api.workers[1], bench_fns.py_add, args=(t, t)), iters)


@measurement("add_python_async", "rpc_async Python py_add, 3x3 float, then wait()")
def add_python_async(api, iters):
    t = torch.ones(SMALL)
    return time_calls(lambda: api.rpc_async(api.workers[1], bench_fns.py_add, args=(t, t)).wait(), iters)


# 16 MiB rows: far fewer iterations (each is a few ms to tens of ms), same
# payload both ways, so the throughput counts 2 x 16 MiB per round trip.
@measurement("bulk_python", "16 MiB round trip, Python identity", iters_scale=1 / 20,
             bytes_per_iter=2 * BULK_BYTES)
def bulk_python(api, iters):
    t = torch.randn(BULK_BYTES // 4)
    return time_calls(lambda: api.rpc_sync(api.workers[1], bench_fns.identity, args=(t,)), iters)


# torch.detach is a builtin that returns its input without copying it, so this
# is the same round trip without the Python (pickle, GIL) path on either side.
@measurement("bulk_builtin", "16 MiB round trip, builtin torch.detach", iters_scale=1 / 20,
             bytes_per_iter=2 * BULK_BYTES)
def bulk_builtin(api, iters):
    t = torch.randn(BULK_BYTES // 4)
    return time_calls(lambda: api.rpc_sync(api.workers[1], torch.detach, args=(t,)), iters)


# The result is computed fresh on the callee (torch.mul(x, 1) allocates and
# writes 16 MiB), as a real remote computation would: no path can return it
# by reference to the caller's own memory.
@measurement("bulk_computed", "16 MiB argument, result computed by builtin torch.mul(x, 1)",
             iters_scale=1 / 20, bytes_per_iter=2 * BULK_BYTES)
def bulk_computed(api, iters):
    t = torch.randn(BULK_BYTES // 4)
    return time_calls(lambda: api.rpc_sync(api.workers[1], torch.mul, args=(t, 1)), iters)


# Distributed autograd rows: whole iterations of a training loop, context
# creation to release. Before timing, one iteration checks that the backward
# pass really produced the expected gradients on this backend.


def _check_gradients(autograd, context_id, expected):
    """Raises unless the context holds exactly the leaves of ``expected``
    (pairs of leaf, expected gradient) with those gradients."""
    grads = autograd.get_gradients(context_id)
    if len(grads) != len(expected) or any(leaf not in grads for leaf, _ in expected):
        raise AssertionError(f"expected gradients for {len(expected)} leaves, got {len(grads)}")
    for leaf, value in expected:
        if not torch.equal(grads[leaf], value):
            raise AssertionError(f"wrong gradient: {grads[leaf]} instead of {value}")


def autograd_iterations(api, forward, expected, iters):
    """Times ``with context(): loss = forward(); backward(cid, [loss])``,
    release included, after checking once that it yields ``expected``."""
    autograd = api.autograd

    def iteration():
        with autograd.context() as context_id:
            autograd.backward(context_id, [forward()])

    with autograd.context() as context_id:
        autograd.backward(context_id, [forward()])
        _check_gradients(autograd, context_id, expected)
    return time_calls(iteration, iters)


@measurement("autograd_add", "dist autograd iteration: context, rpc_sync torch.add, backward, release")
def autograd_add(api, iters):
    t1 = torch.ones(SMALL, requires_grad=True)
    t2 = torch.ones(SMALL, requires_grad=True)
    return autograd_iterations(
        api, lambda: api.rpc_sync(api.workers[1], torch.add, args=(t1, t2)).sum(),
        [(t1, torch.ones(SMALL)), (t2, torch.ones(SMALL))], iters)


# worker0 -> worker1 -> worker2 -> worker3 and back, each of the three callees
# doubling the tensor (Python functions: a nested rpc_sync needs one), then
# the backward pass back along the chain. Fewer iterations: each takes
# several times as long as a single call.
@measurement("autograd_chain", "dist autograd iteration: 4-worker chain of rpc_sync, backward, release",
             world_size=4, iters_scale=1 / 5)
def autograd_chain(api, iters):
    t = torch.ones(SMALL, requires_grad=True)
    route = api.workers[2:]
    return autograd_iterations(
        api,
        lambda: api.rpc_sync(api.workers[1], bench_fns.chain_hop, args=(api.rpc_module, route, t)).sum(),
        [(t, torch.full(SMALL, 8.0))], iters)


# Remote references: creation and fetch, a method call through a proxy, and
# the distributed optimizer's step.


@measurement("rref_remote_to_here", "remote torch.add 3x3, then to_here")
def rref_remote_to_here(api, iters):
    t = torch.ones(SMALL)
    return time_calls(lambda: api.rpc.remote(api.workers[1], torch.add, args=(t, t)).to_here(), iters)


@measurement("rref_proxy", "RRef proxy call: rref.rpc_sync().add(3x3) on its owner")
def rref_proxy(api, iters):
    t = torch.ones(SMALL)
    rref = api.rpc.remote(api.workers[1], bench_fns.Accumulator, args=(SMALL,))
    proxy = rref.rpc_sync()
    return time_calls(lambda: proxy.add(t), iters)


@measurement("dist_optim_step", "DistributedOptimizer(SGD).step over 2 owners (3x3 params each)",
             world_size=3)
def dist_optim_step(api, iters):
    params = [api.rpc.remote(w, bench_fns.make_param, args=(SMALL,)) for w in api.workers[1:3]]
    optimizer = api.optim.DistributedOptimizer(torch.optim.SGD, params, lr=0.01)
    autograd = api.autograd
    with autograd.context() as context_id:
        loss = sum(p.to_here().sum() for p in params)
        autograd.backward(context_id, [loss])
        return time_calls(lambda: optimizer.step(context_id), iters)


# The training iteration of the demo (python -m distgrad.examples.train):
# a TorchScript forward forking one RPC per parameter server, a backward pass
# reaching both servers, a DistributedOptimizer step (SGD with momentum) on
# the three owners, on batches of 32 digits.
DEMO_MODELS = {"distgrad": "distgrad.examples.digits", "torch": "distgrad.examples.digits_torch",
               "torch_tcp": "distgrad.examples.digits_torch"}


@measurement("demo_iteration", "demo training iteration: scripted fork forward, backward, optimizer step",
             world_size=3, iters_scale=1 / 5)
def demo_iteration(api, iters):
    from types import SimpleNamespace

    from distgrad.examples import digits, train

    model = train.Model(api.rpc, api.autograd, api.optim.DistributedOptimizer,
                        importlib.import_module(DEMO_MODELS[api.backend]).hidden_forward,
                        api.workers[1:3], SimpleNamespace(seed=0, hidden=64, lr=0.05))
    x, y, _, _ = digits.load(seed=0)
    batches = itertools.cycle(list(zip(x.split(32), y.split(32))))
    return time_calls(lambda: model.step(*next(batches)), iters)


# A job of 16 workers on this machine: how long init_rpc takes, what the
# job costs while nobody calls, and a call's latency between two of them.
MANY = 16


@measurement("init_16", f"{MANY} workers: init_rpc returned on all, after the last one called it",
             world_size=MANY, iters_scale=0)
def init_16(api, iters):
    times = []
    for w in api.workers:
        # A worker sets its times just after its init_rpc returns, which may
        # be a moment after this one's.
        deadline = time.monotonic() + RPC_TIMEOUT
        while (t := api.rpc_sync(w, bench_fns.init_times)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        times.append(t)
    return [round(1e9 * (max(r for _, r in times) - max(c for c, _ in times)))]


@measurement("idle_cpu_16", f"{MANY} workers idle: CPU time all of them use per second",
             world_size=MANY, iters_scale=0)
def idle_cpu_16(api, iters):
    pids = [api.rpc_sync(w, os.getpid) for w in api.workers]
    samples = []
    for _ in range(3):
        before = sum(_process_cpu_ns(pid) for pid in pids)
        time.sleep(1.0)
        samples.append(sum(_process_cpu_ns(pid) for pid in pids) - before)
    return samples


@measurement("add_builtin_16", f"{MANY} workers: rpc_sync torch.add, 3x3 float", world_size=MANY)
def add_builtin_16(api, iters):
    return add_builtin(api, iters)


def _process_cpu_ns(pid):
    """CPU time of the threads process pid has now, in ns: the scheduler's
    own count (/proc/<pid>/task/<tid>/schedstat), not utime + stime, which
    come in clock ticks (10 ms here: a second of an idle job read 10, 20 or
    30 ms). A thread that ends between two readings takes its time along."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return total


# --------------------------------------------------------------------------
# Running one job: world_size processes of one backend.


def _rank0_main(backend_name, world_size, names, iters, num_worker_threads, results):
    """Body of rank 0 of a job, a fresh process: starts the other ranks as
    a distgrad._testing.Cluster of this backend (the helper the tests use),
    runs the measurements named in ``names`` and puts ("results", {name:
    samples}) on ``results``, then shuts the job down. A measurement that
    raises gets its traceback (a str) instead of samples; any other failure
    is put there as ("error", traceback). A worker that does not shut down
    cleanly is reported as ("warning", text) after the results."""
    try:
        one_intra_op_thread()
        env = {NUM_WORKER_THREADS: str(num_worker_threads)}
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = "1"  # see one_intra_op_thread
        os.environ.update(env)  # rank 0 joins through the same backend object
        imports = [DEMO_MODELS[backend_name]] if "demo_iteration" in names and _has_sklearn() else []
        for module in imports:
            importlib.import_module(module)
        cluster = Cluster(world_size, env=env, root=TOOLS, rpc_timeout=RPC_TIMEOUT,
                          backend=f"bench_backends:{backend_name}", imports=imports).start()
        backend = BACKENDS[backend_name]
        api = Api(backend, importlib.import_module(backend.rpc_module), world_size)
        samples = {}
        for name in names:
            m = MEASUREMENTS[name]
            try:
                samples[name] = m.fn(api, m.iterations(iters))
            except Exception:  # noqa: BLE001 - one failing row must not cost the others
                samples[name] = traceback.format_exc()
        results.put(("results", samples))
        try:
            cluster.stop()
        except AssertionError as failures:  # a worker that did not exit cleanly
            results.put(("warning", str(failures)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which decides
        results.put(("error", traceback.format_exc()))
        sys.exit(1)


def one_intra_op_thread():
    """As torchrun does for a job of several processes on one machine (and
    the demo too): one intra-op thread per process, unless OMP_NUM_THREADS
    says otherwise. With torch's default (one per core) every process of a
    job runs OpenMP teams that spin at their barriers for cores the other
    processes hold, and a row measures that fight (a tick or two, 4-8 ms)
    rather than its RPCs."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def _has_sklearn():
    """The demo's data (scikit-learn's digits) is an optional dependency."""
    return importlib.util.find_spec("sklearn") is not None


class JobError(RuntimeError):
    pass


def run_job(backend_name, world_size, names, iters, num_worker_threads):
    """Runs a job of world_size fresh processes, returns rank 0's samples.
    Every process of the job has exited (or been killed) when it returns:
    the workers die with rank 0 (see distgrad._testing.worker)."""
    # spawn, not fork: rank 0 starts clean (no inherited torch threads or
    # state from this process or from the previous job).
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    rank0 = context.Process(target=_rank0_main, name=f"bench-{backend_name}-0",
                            args=(backend_name, world_size, names, iters, num_worker_threads, results))
    rank0.start()
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        samples = None
        while samples is None:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                if rank0.exitcode is not None:
                    raise JobError(f"{backend_name}: rank 0 exited with code {rank0.exitcode} without reporting")
                if time.monotonic() > deadline:
                    raise JobError(f"{backend_name}: no result after {JOB_TIMEOUT} s")
                continue
            if message[0] == "error":
                raise JobError(f"{backend_name}: rank 0 failed:\n{message[1]}")
            samples = message[1]
        # Measured; now the job should also shut down cleanly (the Cluster
        # waits up to 15 s per shutdown step and 30 s for the processes).
        rank0.join(timeout=RPC_TIMEOUT)
        leftover = []
        while True:
            try:
                leftover.append(results.get_nowait())
            except queue.Empty:
                break
        warnings_ = [m[1] for m in leftover if m[0] == "warning"]
        if rank0.exitcode != 0 or warnings_:
            detail = "".join(f"\n{w}" for w in warnings_)
            print(f"warning: {backend_name} job did not shut down cleanly "
                  f"(rank 0 exit code {rank0.exitcode}){detail}", file=sys.stderr)
        return samples
    finally:
        if rank0.is_alive():
            rank0.kill()
        rank0.join(timeout=10)


# --------------------------------------------------------------------------
# Statistics and output.


def summarize(samples, bytes_per_iter):
    ordered = sorted(samples)
    n = len(ordered)

    def percentile(q):  # nearest rank
        return ordered[max(0, math.ceil(q * n) - 1)]

    stats = {
        "iters": n,
        "median_us": percentile(0.5) / 1e3,
        "p90_us": percentile(0.9) / 1e3,
        "min_us": ordered[0] / 1e3,
        "mean_us": sum(ordered) / n / 1e3,
    }
    if bytes_per_iter:
        # MB = 10^6 bytes; both directions counted.
        stats["median_MBps"] = bytes_per_iter / (stats["median_us"] * 1e-6) / 1e6
    return stats


def _fmt_time(us):
    return f"{us / 1e3:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def format_table(rows, backends, markdown=False):
    """rows: [(measurement, {backend: stats})]. One column pair (median,
    p90) per backend, MB/s per backend if a row moves bulk data, and the
    ratio other/distgrad of the medians for every other backend (above 1:
    distgrad is faster)."""
    others = [b for b in backends if b != REFERENCE] if REFERENCE in backends else []
    has_bulk = any(m.bytes_per_iter for m, _ in rows)
    header = ["measurement"]
    for b in backends:
        header += [f"{b} median", f"{b} p90"]
    if has_bulk:
        header += [f"{b} MB/s" for b in backends]
    header += [f"{b}/{REFERENCE}" for b in others]
    table = []
    for m, by_backend in rows:
        line = [m.title]
        for b in backends:
            s = by_backend.get(b)
            line += [_fmt_time(s["median_us"]), _fmt_time(s["p90_us"])] if s else ["-", "-"]
        if has_bulk:
            for b in backends:
                s = by_backend.get(b)
                line.append(f"{s['median_MBps']:.0f}" if s and "median_MBps" in s else "")
        ref = by_backend.get(REFERENCE)
        for b in others:
            s = by_backend.get(b)
            line.append(f"{s['median_us'] / ref['median_us']:.2f}x" if s and ref else "-")
        table.append(line)
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in table]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in table])


def _busy_cpu_seconds():
    """CPU time that processes of the whole machine have used so far (all
    CPUs), from /proc/stat; None where there is no /proc/stat. Only user,
    nice and system time: interrupt and softirq time is charged to no
    process, and loopback TCP spends a good deal of it on behalf of the
    benchmark itself (about 0.2 s per second of 16 MiB transfers here)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system = (int(v) for v in f.readline().split()[1:4])
    except OSError:
        return None
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    """CPU time of this process and of its children that have exited."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_busy_fraction(seconds=1.0):
    """How busy all CPUs were over the next ``seconds`` (0..1). Unlike the
    load average, this does not remember the previous run."""
    before = _busy_cpu_seconds()
    time.sleep(seconds)
    after = _busy_cpu_seconds()
    if before is None or after is None:
        return None
    return (after - before) / (seconds * os.cpu_count())


class ForeignCpu:
    """Measures the CPU time that processes other than this benchmark used
    while a job ran: the machine's busy time minus ours (run_job has reaped
    every worker it started by the time it returns, so their time counts as
    ours)."""

    def __enter__(self):
        self._start = time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds()
        self.seconds = self.fraction = None
        return self

    def __exit__(self, *exc):
        wall, busy, own = time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds()
        if busy is not None and self._start[1] is not None:
            self.seconds = max(0.0, (busy - self._start[1]) - (own - self._start[2]))
            self.fraction = self.seconds / ((wall - self._start[0]) * os.cpu_count())
        return False


# --------------------------------------------------------------------------
# Floors: what this machine allows at best, measured in the same run.


def measure_floors(iters):
    """{name: median µs}: a 64-byte loopback TCP round trip between two
    processes in C, busy polling, blocking, and blocking with both on one
    core (tools/pingpong.c, compiled here with cc), and the local work of a computed 16 MiB round trip: the
    argument copied (RPC arguments are copies) and torch.mul(x, 1) computed,
    each into memory already in use (no page faults: what a steady state can
    reach). The result needs no copy of its own: computed where the caller
    reads it, as distgrad's builtin results are, it is already there.
    A floor that cannot be measured (no compiler) is left out."""
    floors = {}
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pingpong.c")
    with tempfile.TemporaryDirectory() as build:
        binary = os.path.join(build, "pingpong")
        compiler = os.environ.get("CC", "cc")
        try:
            subprocess.run([compiler, "-O2", "-o", binary, source], check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"warning: cannot build {source} ({error}); no round-trip floor", file=sys.stderr)
        else:
            for mode in ("busy", "block", "block1"):
                out = subprocess.run([binary, mode, str(max(1000, iters))], check=True, capture_output=True,
                                     text=True, timeout=300).stdout
                floors[f"tcp_{mode}"] = float(out)
    x, sent, computed = (torch.randn(BULK_BYTES // 4) for _ in range(3))

    def local_round_trip():
        sent.copy_(x)
        torch.mul(sent, 1, out=computed)

    threads = torch.get_num_threads()
    one_intra_op_thread()  # as in the workers
    try:
        samples = time_calls(local_round_trip, max(MIN_ITERS, iters // 20))
    finally:
        torch.set_num_threads(threads)
    floors["bulk_computed"] = sorted(samples)[len(samples) // 2] / 1e3
    return floors


FLOOR_TITLES = {
    "tcp_busy": "64-byte TCP round trip between two processes, busy polling (C)",
    "tcp_block": "64-byte TCP round trip between two processes, blocking recv (C)",
    "tcp_block1": "the same, both processes on one core: no wakeup crosses cores (C)",
    "bulk_computed": "16 MiB copied, then torch.mul(x, 1) into memory in use, in one process, no page faults",
}
# Rows compared with a floor: (row, floor).
FLOOR_OF = {"add_builtin": "tcp_busy", "bulk_computed": "bulk_computed"}


def format_floors(floors, stats):
    lines = ["floors on this machine (same run):"]
    lines += [f"  {FLOOR_TITLES[name]}: {_fmt_time(us)}" for name, us in floors.items()]
    for row, floor in FLOOR_OF.items():
        ours = stats.get(row, {}).get(REFERENCE)
        if ours and floor in floors:
            lines.append(f"  {MEASUREMENTS[row].title}: {ours['median_us'] / floors[floor]:.1f}x its floor")
    return "\n".join(lines)


def machine_description():
    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=5000,
                        help="timed iterations of the small-message rows; the 16 MiB rows run 1/20 of it "
                             f"(at least {MIN_ITERS}); a tenth more is run first as warm-up (default 5000)")
    parser.add_argument("--only", action="append", metavar="NAME", choices=sorted(MEASUREMENTS),
                        help="run only this measurement (repeatable): " + ", ".join(MEASUREMENTS))
    parser.add_argument("--backend", action="append", choices=list(BACKENDS),
                        help="run this backend (repeatable; default: " + " and ".join(DEFAULT_BACKENDS)
                             + "; torch_tcp is TensorPipe restricted to TCP sockets)")
    parser.add_argument("--threads", type=int, default=4,
                        help="num_worker_threads of every worker, on both backends (default 4)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="run every measurement in a job of at least N workers: the ranks a row does "
                             "not use stay idle, as in a job with more workers than cores (default: each "
                             "row's own size)")
    parser.add_argument("--no-floors", action="store_true", help="do not measure this machine's floors")
    parser.add_argument("--json", metavar="PATH", help="write raw samples and statistics to PATH")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    args = parser.parse_args(argv)

    # On 2 cores, anything else running (a compiler, a test suite) shows up
    # directly in the figures: say so rather than print them silently.
    busy = cpu_busy_fraction()
    if busy is not None and busy > 0.15:
        print(f"warning: the CPUs were {busy:.0%} busy just before starting; figures will be noisy",
              file=sys.stderr, flush=True)

    selected = [MEASUREMENTS[n] for n in (args.only or MEASUREMENTS)]
    # Before the jobs, while the machine is as quiet as it will be.
    floors = {} if args.no_floors else measure_floors(args.iters)
    backends = [b for b in BACKENDS if b in (args.backend or DEFAULT_BACKENDS)]

    # One job per (world size, backend). The backends run one after the
    # other, never at the same time: the machine has 2 cores, and two jobs
    # running at once would measure each other's scheduling, not the RPCs.
    by_world_size = {}
    for m in selected:
        by_world_size.setdefault(max(m.world_size, args.workers), []).append(m)
    stats = {m.name: {} for m in selected}
    raw = {m.name: {} for m in selected}
    failures = []
    jobs = []  # per job: how long it took and how much CPU others used meanwhile
    noisy = []
    for world_size, group in by_world_size.items():
        names = [m.name for m in group]
        for backend in backends:
            print(f"running {backend}, {world_size} workers: {', '.join(names)}", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                with ForeignCpu() as foreign:
                    samples = run_job(backend, world_size, names, args.iters, args.threads)
            except JobError as error:
                # Keep going: the other backends and groups still give figures.
                print(f"error: {error}", file=sys.stderr, flush=True)
                failures.append(str(error))
                continue
            print(f"  done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
            jobs.append({"backend": backend, "world_size": world_size, "measurements": names,
                         "seconds": time.monotonic() - started, "foreign_cpu_seconds": foreign.seconds})
            if foreign.fraction is not None and foreign.fraction > 0.05:
                print(f"  warning: other processes used {foreign.seconds:.1f} CPU seconds "
                      f"({foreign.fraction:.0%} of the machine) during this job; its figures are suspect",
                      file=sys.stderr, flush=True)
                noisy.append(f"{backend} ({world_size} workers): {foreign.fraction:.0%}")
            for m in group:
                if isinstance(samples[m.name], str):
                    print(f"error: {m.name} on {backend} failed:\n{samples[m.name]}", file=sys.stderr)
                    failures.append(f"{m.name} on {backend}")
                    continue
                raw[m.name][backend] = samples[m.name]
                stats[m.name][backend] = summarize(samples[m.name], m.bytes_per_iter)

    machine = machine_description()
    machine["cpu_busy_before_start"] = busy
    busy_note = f", CPUs {busy:.0%} busy before start" if busy is not None else ""
    print(f"{machine['cpus']} CPUs, torch {machine['torch']}, Python {machine['python']}, "
          f"--iters {args.iters}, {args.threads} worker threads{busy_note}")
    print(format_table([(m, stats[m.name]) for m in selected], backends, markdown=args.markdown))
    if floors:
        print(format_floors(floors, stats))
    if noisy:
        print("note: other processes were busy during: " + ", ".join(noisy))

    if args.json:
        document = {
            "machine": machine,
            "options": {"iters": args.iters, "threads": args.threads, "backends": backends},
            "failures": failures,
            "floors_us": floors,
            "jobs": jobs,
            "measurements": {
                m.name: {
                    "title": m.title, "world_size": m.world_size, "bytes_per_iter": m.bytes_per_iter,
                    "stats": stats[m.name], "samples_ns": raw[m.name],
                }
                for m in selected
            },
        }
        with open(args.json, "w") as f:
            json.dump(document, f, indent=1)
        print(f"raw results written to {args.json}", file=sys.stderr)
    if failures:
        print(f"failed (shown as '-'): {'; '.join(f.splitlines()[0] for f in failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
