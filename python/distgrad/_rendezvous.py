"""Finding the other workers of a job through a c10d store: each worker
publishes its name and listening address there and learns everyone else's;
the same store serves the barriers of a graceful shutdown.

The store is the one the init method names, as torch.distributed finds it:
for ``env://`` and ``tcp://host:port`` a TCPStore hosted by rank 0 (or, under
torchrun, by its agent), for ``file:///path`` a FileStore. Rank 0 hosts its
TCPStore multi-tenant, so that in a process where torch.distributed already
serves a store at that address (``init_process_group``) both share one
server. A store may therefore outlive a job, or serve several: every job
works under a key prefix of its own."""

import os
import pickle
import secrets
import socket
import time
from datetime import timedelta
from typing import NamedTuple, Optional
from urllib.parse import urlparse

import torch.distributed as c10d

from .errors import DistError, DistNetworkError, DistTimeoutError

_PREFIX = "distgrad/"
# A barrier or rendezvous with no timeout still has to pass one to the store.
_FOREVER = timedelta(days=365)
# Seconds between looks at a barrier (and for lost workers) while waiting.
_CHECK_INTERVAL = 0.1


class InitMethod(NamedTuple):
    """Where the workers meet: a TCPStore at (host, port), or a FileStore at path."""

    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None


def parse_init_method(init_method):
    """The InitMethod of "env://" (MASTER_ADDR and MASTER_PORT),
    "tcp://host:port" or "file:///path"."""
    if init_method == "env://":
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            variables = "variables" if len(missing) > 1 else "variable"
            raise ValueError(f"init_method 'env://' needs the environment {variables} {', '.join(missing)}")
        port = os.environ["MASTER_PORT"]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"the environment variable MASTER_PORT must be a port number, got {port!r}")
        return InitMethod(host=os.environ["MASTER_ADDR"], port=int(port))
    parsed = urlparse(init_method)
    extra = parsed.query or parsed.fragment or parsed.params
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:  # out of range
            port = None
        if parsed.hostname and port and parsed.path in ("", "/") and not extra:
            return InitMethod(host=parsed.hostname, port=port)
    if parsed.scheme == "file":
        if parsed.netloc or not parsed.path or parsed.path.endswith("/") or extra:
            raise ValueError(f"a file:// init_method names a file by its absolute path "
                             f"(file:///path/to/file), got {init_method!r}")
        return InitMethod(path=parsed.path)
    raise ValueError(f"init_method must be 'env://', 'tcp://host:port' or 'file:///path', got {init_method!r}")


def _as_timedelta(seconds):
    return _FOREVER if seconds <= 0 else timedelta(seconds=seconds)


def local_address_towards(host, port):
    """The address of this machine's interface that reaches host."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, port))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _address_of_this_host():
    """The address this machine's name resolves to: a file:// job names no
    network address to find the interface towards."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _open_store(method, rank, world_size, timeout):
    """The store of the init method; rank 0 hosts a TCPStore unless torchrun does."""
    if method.path is not None:
        store = c10d.FileStore(method.path, world_size)
        store.set_timeout(timeout)
        return store
    # torchrun's agent hosts the store at MASTER_ADDR:MASTER_PORT itself.
    hosted_by_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    return c10d.TCPStore(
        method.host, method.port, world_size, is_master=(rank == 0 and not hosted_by_agent),
        timeout=timeout, wait_for_workers=False, multi_tenant=True,
    )


class Rendezvous:
    def __init__(self, method, rank, world_size, timeout):
        self.method = method
        self.rank = rank
        self.world_size = world_size
        self.timeout = timeout
        where = method.path or f"{method.host}:{method.port}"
        try:
            store = _open_store(method, rank, world_size, _as_timedelta(timeout))
            # The n-th job rank r joins through this store is every rank's
            # n-th: on a new store, the first.
            self.job = store.add(_PREFIX + f"joins/{rank}", 1)
        except Exception as error:
            raise DistError(f"rank {rank} could not reach the rendezvous store at {where}: {error}") from error
        self.store = c10d.PrefixStore(_PREFIX + f"job{self.job}", store)

    def local_address(self):
        """The address at which the other workers can reach this one."""
        if self.method.path is not None:
            return _address_of_this_host()
        return local_address_towards(self.method.host, self.method.port)

    def job_secret(self):
        """DISTGRAD_AUTH_TOKEN when set, else a random token from rank 0."""
        token = os.environ.get("DISTGRAD_AUTH_TOKEN")
        if token:
            return token
        if self.rank == 0:
            self.store.set("secret", secrets.token_hex(32))
        return self._get("secret", "the job secret from rank 0").decode()

    def exchange(self, name, address):
        """Publishes this worker and returns (names, addresses) by rank."""
        self.store.set(f"worker/{self.rank}", pickle.dumps((name, address)))
        names, addresses = [], []
        for r in range(self.world_size):
            other_name, other_address = pickle.loads(self._get(f"worker/{r}", f"rank {r} to join"))
            names.append(other_name)
            addresses.append(other_address)
        seen = {}
        for r, n in enumerate(names):
            if n in seen:
                raise ValueError(f"worker name {n!r} is used by both rank {seen[n]} and rank {r}")
            seen[n] = r
        return names, addresses

    def barrier(self, label, timeout, lost_workers=None):
        """Returns when all workers have reached the barrier called label.
        While waiting, asks lost_workers() for (rank, reason) of the workers
        known to be gone, and gives up with DistNetworkError if one of them
        had not arrived: the barrier can then never complete."""
        key = f"barrier/{label}"
        self.store.set(f"{key}/rank/{self.rank}", b"1")
        if self.store.add(key, 1) == self.world_size:
            self.store.set(key + "/done", b"1")
        # Polled with check(), which does not block: a store wait() that
        # times out logs a warning each time.
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        done = [key + "/done"]
        while not self.store.check(done):
            if deadline is not None and time.monotonic() >= deadline:
                missing = [r for r in range(self.world_size) if not self.store.check([f"{key}/rank/{r}"])]
                lost = dict(lost_workers() if lost_workers else [])
                raise DistTimeoutError(
                    f"only {self.world_size - len(missing)} of {self.world_size} workers reached '{label}' "
                    f"within {timeout} seconds; missing: "
                    + ", ".join(f"rank {r}" + (f" ({lost[r]})" if r in lost else "") for r in missing)
                )
            for rank, reason in (lost_workers() if lost_workers else []):
                if not self.store.check([f"{key}/rank/{rank}"]):
                    raise DistNetworkError(f"cannot shut down gracefully: {reason}")
            time.sleep(_CHECK_INTERVAL)

    def leave(self, timeout):
        """Called last by every worker; rank 0, which may host the store,
        returns only when every other worker is done with it."""
        if self.rank != 0:
            self.store.set(f"left/{self.rank}", b"1")
            return
        keys = [f"left/{r}" for r in range(1, self.world_size)]
        if keys:
            self.store.wait(keys, _as_timedelta(timeout))

    def _get(self, key, what):
        try:
            self.store.wait([key], _as_timedelta(self.timeout))
        except Exception as error:
            hint = ""
            if self.job > 1:
                hint = (f" (this is the job number {self.job} that rank {self.rank} joins through this store: "
                        "every worker must call init_rpc as often, and no two may use the same rank)")
            raise DistTimeoutError(
                f"rank {self.rank} timed out after {self.timeout} seconds waiting for {what}{hint}"
            ) from error
        return self.store.get(key)
