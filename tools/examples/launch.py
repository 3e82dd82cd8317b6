"""Starts the worker processes of one example job on this machine.

``run_job(worker, names, config, timeout)`` starts one process per name
(torch.multiprocessing, start method "spawn"); each joins a distgrad job as
that worker, on a free TCP port of 127.0.0.1, calls ``worker(rank, config)``
and then ``rpc.shutdown()``. Rank 0 is the example's driver: what its
``worker`` returns is what ``run_job`` returns. The other ranks usually
return at once and serve RPCs until rank 0 is done.

Nothing outlives the job: ``run_job`` waits at most ``timeout`` seconds,
raises on the first failure, and terminates every process still running
before it returns; a worker whose parent dies exits at once.
"""

import ctypes
import multiprocessing.connection
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback

import torch.multiprocessing as mp

import distgrad.rpc as rpc

__all__ = ["run_job"]

# How long a process gets to exit once asked to terminate, before SIGKILL.
_TERMINATE_GRACE = 5.0


def run_job(worker, names, config, timeout):
    """Runs ``worker(rank, config)`` in ``len(names)`` new processes joined as
    a distgrad job, worker ``rank`` being called ``names[rank]``, and returns
    rank 0's result (which must be picklable). ``worker`` must be a
    module-level function: the processes import it by name.

    Raises RuntimeError with the worker's traceback when a worker fails (the
    first to report, which is where the trouble started: the others fail
    after it), or when one exits without reporting; TimeoutError after
    ``timeout`` seconds. Every process is gone when this returns."""
    context = mp.get_context("spawn")
    reports = context.Queue()
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    processes = [context.Process(target=_worker_main, name=name,
                                 args=(rank, worker, names, init_method, timeout, config, reports))
                 for rank, name in enumerate(names)]
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.start()
        result = None
        pending = set(range(len(names)))
        while pending:
            rank, failure, value = _next_report(reports, processes, pending, deadline, timeout)
            if failure:
                raise RuntimeError(f"worker {names[rank]!r} failed:\n{value}")
            pending.discard(rank)
            if rank == 0:
                result = value
        return result
    finally:
        _stop(processes)


def _next_report(reports, processes, pending, deadline, timeout):
    """The next (rank, failure, value) a process reports. Raises
    RuntimeError if a process in ``pending`` exited without reporting,
    TimeoutError once the deadline has passed."""
    while True:
        try:
            return reports.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            pass
        for rank in pending:
            code = processes[rank].exitcode
            if code is not None:
                # A report made just before exiting may still be on its way.
                try:
                    return reports.get(timeout=1.0)
                except queue.Empty:
                    raise RuntimeError(f"worker {processes[rank].name!r} exited with code {code} "
                                       "without reporting") from None
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the example job did not finish within {timeout} s "
                               f"(still running: {', '.join(processes[r].name for r in sorted(pending))})")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_main(rank, worker, names, init_method, timeout, config, reports):
    """The body of each process: reports (rank, False, result) once the job
    has shut down, or (rank, True, traceback) if anything failed."""
    _die_with_parent()
    try:
        rpc.init_rpc(names[rank], rank=rank, world_size=len(names), init_method=init_method, timeout=timeout)
        result = worker(rank, config)
        rpc.shutdown()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        reports.put((rank, True, traceback.format_exc()))
        sys.exit(1)
    reports.put((rank, False, result))


def _die_with_parent():
    """Makes this process exit as soon as the process that started it is
    gone, even while it is blocked (the kernel's PR_SET_PDEATHSIG, and a
    thread for a parent that died before that was set)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = mp.parent_process()

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _stop(processes):
    """Terminates the processes still running and reaps all of them."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE
    for process in processes:
        if process.pid is None:  # never started
            continue
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
