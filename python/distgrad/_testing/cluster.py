"""A local job for tests and benchmarks: rank 0 is the calling process,
ranks 1..N-1 are worker processes (distgrad._testing.worker)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import backend as default_backend

# How long the workers get to import torch and reach init_rpc.
_START_TIMEOUT = 60.0


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """world_size workers named "worker0".."worker{N-1}"; this process is
    worker0. ``env`` adds environment variables for the worker processes.
    ``root`` (default: the current directory) is their working directory and
    is put on their PYTHONPATH, so that modules of the tests that define
    remote functions import there under the same names. ``rpc_timeout`` is
    the init_rpc timeout of rank 0, the default timeout of its calls.
    ``init_method`` is where the workers meet (default: a free TCP port of
    127.0.0.1). ``backend`` names the object through which every process
    joins and leaves the job, "module" or "module:attribute", with
    ``init(name, rank, world_size, init_method, timeout)`` (timeout None:
    the backend's default) and ``shutdown(graceful, timeout)``; the default
    is distgrad.rpc (distgrad._testing.backend). ``imports`` are modules
    every worker imports before it joins (say, ones that compile TorchScript
    functions the job calls by name)."""

    def __init__(self, world_size, env=None, root=None, rpc_timeout=60.0, init_method=None,
                 backend="distgrad._testing.backend", imports=()):
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}")
        self.world_size = world_size
        self.env = dict(env or {})
        self.root = Path(root or os.getcwd()).resolve()
        self.rpc_timeout = rpc_timeout
        self.backend_name = backend
        self.imports = tuple(imports)
        self._chosen_init_method = init_method
        self.init_method = None
        self.log_dir = None
        self._procs = {}  # rank -> Popen, ranks 1..N-1
        self._killed = set()

    def name(self, rank):
        """The name of the worker with this rank."""
        return f"worker{rank}"

    def start(self):
        """Launches the worker processes and joins the job as rank 0; returns
        self once every worker is known."""
        self.init_method = self._chosen_init_method or f"tcp://127.0.0.1:{_free_port()}"
        self.log_dir = Path(tempfile.mkdtemp(prefix="distgrad-cluster-"))
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.root), env.get("PYTHONPATH")) if p)
        try:
            for rank in range(1, self.world_size):
                command = [
                    sys.executable, "-m", "distgrad._testing.worker",
                    "--rank", str(rank), "--world-size", str(self.world_size),
                    "--init-method", self.init_method,
                    "--parent-pid", str(os.getpid()), "--ready-file", str(self._ready_file(rank)),
                    "--backend", self.backend_name,
                ]
                for module in self.imports:
                    command += ["--import", module]
                with open(self._log_file(rank), "wb") as log:
                    self._procs[rank] = subprocess.Popen(
                        command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                    )
            # Waiting for the workers to have imported torch keeps the
            # rendezvous short, so that rank 0 may use a small rpc_timeout.
            self._wait_until_ready()
            self._backend().init(self.name(0), 0, self.world_size, self.init_method, self.rpc_timeout)
        except BaseException:
            self._kill_all()
            raise
        return self

    def stop(self, graceful=True):
        """Leaves the job and waits up to 30 s for every worker process to
        exit, killing those still running. With graceful=True (impossible, and
        so not attempted, once a worker was killed) all workers shut down
        together (each step may take 15 s), and a worker that does not exit
        with code 0 raises AssertionError quoting its log. The logs are
        removed when everything went well."""
        graceful = graceful and not self._killed
        try:
            self._backend().shutdown(graceful, 15.0)
        except BaseException as error:
            self._kill_all()
            error.add_note(f"the worker logs are in {self.log_dir}")
            raise
        if not graceful:
            self._kill_all()
        failures = self._wait_for_exit(deadline=time.monotonic() + 30.0)
        if graceful and failures:
            raise AssertionError("\n\n".join(failures))
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def kill(self, rank):
        """Kills worker ``rank`` with SIGKILL and waits for it to be gone."""
        proc = self._procs[rank]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self._killed.add(rank)

    def log(self, rank):
        """Everything worker ``rank`` has written to stdout and stderr so far."""
        return self._log_file(rank).read_text(errors="replace")

    def pid(self, rank):
        """The process id of worker ``rank`` (1..N-1)."""
        return self._procs[rank].pid

    def returncode(self, rank):
        """The exit code of worker ``rank``, or None while it runs."""
        return self._procs[rank].poll()

    def _backend(self):
        return default_backend.resolve(self.backend_name)

    def _log_file(self, rank):
        return self.log_dir / f"worker{rank}.log"

    def _ready_file(self, rank):
        return self.log_dir / f"worker{rank}.ready"

    def _wait_until_ready(self):
        deadline = time.monotonic() + _START_TIMEOUT
        for rank, proc in self._procs.items():
            while not self._ready_file(rank).exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name(rank)} exited with code {proc.returncode} "
                                       f"while starting:\n{self.log(rank)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name(rank)} did not start within {_START_TIMEOUT} s:\n"
                                       f"{self.log(rank)}")
                time.sleep(0.02)

    def _wait_for_exit(self, deadline):
        """Waits for every worker until deadline, kills the rest; returns a
        description of each one that did not exit with code 0."""
        failures = []
        for rank, proc in self._procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                failures.append(f"{self.name(rank)} did not exit within 30 s after shutdown "
                                f"and was killed; its log:\n{self.log(rank)}")
                continue
            if proc.returncode != 0 and rank not in self._killed:
                failures.append(f"{self.name(rank)} exited with code {proc.returncode}; "
                                f"its log:\n{self.log(rank)}")
        return failures

    def _kill_all(self):
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs.values():
            proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(graceful=exc_type is None)
