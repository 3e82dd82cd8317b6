"""Finding the other workers of a job through torch's c10d TCPStore, hosted
by rank 0: each worker publishes its name and listening address, and learns
everyone else's. The same store serves the barriers of a graceful shutdown."""

import os
import pickle
import secrets
import socket
import time
from datetime import timedelta
from urllib.parse import urlparse

import torch.distributed as c10d

from .errors import DistError, DistNetworkError, DistTimeoutError

_PREFIX = "distgrad/"
# A barrier or rendezvous with no timeout still has to pass one to the store.
_FOREVER = timedelta(days=365)
# Seconds between looks at a barrier (and for lost workers) while waiting.
_CHECK_INTERVAL = 0.1


def parse_init_method(init_method):
    """Returns (host, port) from "env://" or "tcp://host:port"."""
    if init_method == "env://":
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise ValueError(f"init_method 'env://' needs the environment variables {', '.join(missing)}")
        return os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    parsed = urlparse(init_method)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise ValueError(f"init_method must be 'env://' or 'tcp://host:port', got {init_method!r}")
    return parsed.hostname, parsed.port


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


class Rendezvous:
    def __init__(self, host, port, rank, world_size, timeout):
        self.rank = rank
        self.world_size = world_size
        self.timeout = timeout
        try:
            self.store = c10d.TCPStore(
                host, port, world_size, is_master=(rank == 0),
                timeout=_as_timedelta(timeout), wait_for_workers=False,
            )
        except Exception as error:
            raise DistError(f"rank {rank} could not reach the rendezvous store at {host}:{port}: {error}") from error

    def job_secret(self):
        """DISTGRAD_AUTH_TOKEN when set, else a random token from rank 0."""
        token = os.environ.get("DISTGRAD_AUTH_TOKEN")
        if token:
            return token
        key = _PREFIX + "secret"
        if self.rank == 0:
            self.store.set(key, secrets.token_hex(32))
        return self._get(key, "the job secret from rank 0").decode()

    def exchange(self, name, address):
        """Publishes this worker and returns (names, addresses) by rank."""
        if self.store.add(_PREFIX + f"rank/{self.rank}", 1) != 1:
            raise ValueError(f"rank {self.rank} is already taken by another worker of this job")
        self.store.set(_PREFIX + f"worker/{self.rank}", pickle.dumps((name, address)))
        names, addresses = [], []
        for r in range(self.world_size):
            other_name, other_address = pickle.loads(self._get(_PREFIX + f"worker/{r}", f"rank {r} to join"))
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
        key = _PREFIX + f"barrier/{label}"
        self.store.set(f"{key}/rank/{self.rank}", b"1")
        if self.store.add(key, 1) == self.world_size:
            self.store.set(key + "/done", b"1")
        # Polled with check(), which does not block: a store wait() that
        # times out logs a warning each time.
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        done = [key + "/done"]
        while not self.store.check(done):
            if deadline is not None and time.monotonic() >= deadline:
                arrived = self.store.add(key, 0)
                raise DistTimeoutError(
                    f"only {arrived} of {self.world_size} workers reached '{label}' within {timeout} seconds"
                )
            for rank, reason in (lost_workers() if lost_workers else []):
                if not self.store.check([f"{key}/rank/{rank}"]):
                    raise DistNetworkError(f"cannot shut down gracefully: {reason}")
            time.sleep(_CHECK_INTERVAL)

    def leave(self, timeout):
        """Called last by every worker; rank 0, which hosts the store, returns
        only when every other worker is done with it."""
        if self.rank != 0:
            self.store.set(_PREFIX + f"left/{self.rank}", b"1")
            return
        keys = [_PREFIX + f"left/{r}" for r in range(1, self.world_size)]
        if keys:
            self.store.wait(keys, _as_timedelta(timeout))

    def _get(self, key, what):
        try:
            self.store.wait([key], _as_timedelta(self.timeout))
        except Exception as error:
            raise DistTimeoutError(f"rank {self.rank} timed out after {self.timeout} seconds waiting for {what}") from error
        return self.store.get(key)
