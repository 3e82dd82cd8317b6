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

import ipaddress
import os
import secrets
import socket
import time
from datetime import timedelta
from typing import NamedTuple, Optional
from urllib.parse import urlparse

import torch.distributed as c10d

from . import _job_key
from .errors import DistError, DistNetworkError, DistTimeoutError

_PREFIX = "distgrad/"
# A barrier or rendezvous with no timeout still has to pass one to the store.
_FOREVER = timedelta(days=365)
# Seconds between looks at a barrier (and for lost workers) while waiting.
_CHECK_INTERVAL = 0.1
# Seconds between probes of the workers a barrier still waits for.
_PROBE_INTERVAL = 1.0


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
    """This worker's part in one job's use of the store. Every value a worker
    leaves there (its address, its arrival at a barrier) is signed with the
    job key, and values that do not verify are ignored: the store is not
    authenticated, so anyone reaching it could otherwise steer or end the
    job (see _job_key)."""

    def __init__(self, method, rank, world_size, timeout):
        self.method = method
        self.rank = rank
        self.world_size = world_size
        self.timeout = timeout
        self.where = method.path or f"{method.host}:{method.port}"
        self.key = None
        self._key_file = None
        try:
            store = _open_store(method, rank, world_size, _as_timedelta(timeout))
            # The n-th job rank r joins through this store is every rank's
            # n-th: on a new store, the first.
            self.job = store.add(_PREFIX + f"joins/{rank}", 1)
        except Exception as error:
            raise DistError(f"rank {rank} could not reach the rendezvous store at {self.where}: {error}") from error
        self.store = c10d.PrefixStore(_PREFIX + f"job{self.job}", store)

    def local_address(self):
        """The address at which the other workers can reach this one: that of
        the interface towards the store."""
        if self.method.path is not None:
            return _address_of_this_host()
        return local_address_towards(self.method.host, self.method.port)

    def single_host(self):
        """Whether the job can only span this host: its store is a file or
        listens on a loopback address."""
        if self.method.path is not None:
            return True
        try:
            return ipaddress.ip_address(socket.gethostbyname(self.method.host)).is_loopback
        except (OSError, ValueError):
            return False

    def join_key(self):
        """Sets self.key: the job key (see _job_key for where it comes from)."""
        key = _job_key.from_environment()
        if key is None and self.single_host():
            if self.rank == 0:
                self._key_file = _job_key.write_private_key_file()
                self.store.set("key_file", self._key_file.encode())
            path = self._get("key_file", "the path of the job key from rank 0").decode()
            key = _job_key.read_private_key_file(path)
        elif key is None:
            _job_key.warn_unauthenticated(self.where)
            if self.rank == 0:
                self.store.set("key", secrets.token_hex(32).encode())
            key = _job_key.JobKey(self._get("key", "the job key from rank 0"))
        self.key = key

    def forget_key_file(self):
        """Rank 0 removes the key file once every worker has read it."""
        if self._key_file is not None:
            _job_key.remove_private_key_file(self._key_file)
            self._key_file = None

    def exchange(self, name, address):
        """Publishes this worker and returns (names, addresses) by rank."""
        self._set_signed(f"worker/{self.rank}", f"{name}\n{address}".encode())
        names, addresses = self._published()
        seen = {}
        for r, n in enumerate(names):
            if n in seen:
                raise ValueError(f"worker name {n!r} is used by both rank {seen[n]} and rank {r}")
            seen[n] = r
        return names, addresses

    def _published(self):
        """(names, addresses) of every worker, by rank, as each published them."""
        names, addresses = [], []
        for r in range(self.world_size):
            entry = self._get_signed(f"worker/{r}", f"rank {r} to join")
            other_name, _, other_address = entry.decode().partition("\n")
            names.append(other_name)
            addresses.append(other_address)
        return names, addresses

    def exchange_addresses(self):
        """The listening address of every worker, by rank."""
        return self._published()[1]

    def barrier(self, label, timeout, lost_workers=None, failure="cannot shut down gracefully", probe=None):
        """Returns when every worker has reached the barrier called label
        (each has left its signed arrival in the store). While waiting, asks
        lost_workers() for (rank, reason) of the workers known to be gone,
        and gives up with DistNetworkError if one of them had not arrived:
        the barrier can then never complete. Every second it calls
        probe(rank) for each missing worker, so that one that died is known
        to be lost even if this worker never talked to it."""
        self._set_signed(f"barrier/{label}/{self.rank}", b"")
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        next_probe = time.monotonic() + _PROBE_INTERVAL
        # Checked often at first (the others are usually close behind), then
        # less often. check() does not block: a store wait() that times out
        # logs a warning each time.
        interval = 0.002
        while True:
            missing = self._missing(label)
            if not missing:
                return
            lost = dict(lost_workers() if lost_workers else [])
            for rank in missing:
                if rank in lost:
                    raise DistNetworkError(f"{failure}: {lost[rank]}")
            if deadline is not None and time.monotonic() >= deadline:
                raise DistTimeoutError(
                    f"only {self.world_size - len(missing)} of {self.world_size} workers reached '{label}' "
                    f"within {timeout} seconds; missing: " + ", ".join(f"rank {r}" for r in missing))
            if probe is not None and time.monotonic() >= next_probe:
                for rank in missing:
                    probe(rank)
                next_probe = time.monotonic() + _PROBE_INTERVAL
            time.sleep(interval)
            interval = min(interval * 2, _CHECK_INTERVAL)

    def _missing(self, label):
        """The ranks whose signed arrival at barrier label is not in the store."""
        keys = [f"barrier/{label}/{r}" for r in range(self.world_size)]
        if self.store.check(keys):
            values = self.store.multi_get(keys)
            return [r for r, value in enumerate(values) if self.key.open(keys[r], value) is None]
        return [r for r, key in enumerate(keys) if not self.store.check([key])]

    def leave(self, timeout):
        """Called last by every worker; rank 0, which may host the store,
        returns only when every other worker is done with it."""
        self.forget_key_file()
        if self.rank != 0:
            self._set_signed(f"left/{self.rank}", b"")
            return
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        for r in range(1, self.world_size):
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            self._get_signed(f"left/{r}", f"rank {r} to leave", remaining)

    def _set_signed(self, name, value):
        self.store.set(name, self.key.sign(name, value))

    def _get_signed(self, name, what, timeout=None):
        """The signed value under name, waiting for one that verifies (a
        value written from outside the job is ignored)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        while True:
            remaining = 0 if deadline is None else max(0.001, deadline - time.monotonic())
            value = self.key.open(name, self._get(name, what, remaining))
            if value is not None:
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise DistError(f"rank {self.rank}: the store holds a value for {what} that this job did "
                                "not write (is another process writing to the rendezvous store?)")
            time.sleep(_CHECK_INTERVAL)

    def _get(self, key, what, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        try:
            self.store.wait([key], _as_timedelta(timeout))
        except Exception as error:
            hint = ""
            if self.job > 1:
                hint = (f" (this is the job number {self.job} that rank {self.rank} joins through this store: "
                        "every worker must call init_rpc as often, and no two may use the same rank)")
            raise DistTimeoutError(
                f"rank {self.rank} timed out after {timeout} seconds waiting for {what}{hint}"
            ) from error
        return self.store.get(key)
