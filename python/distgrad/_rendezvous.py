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

from . import _C, _job_key
from .errors import DistError, DistNetworkError, DistTimeoutError

_PREFIX = "distgrad/"
# A barrier or rendezvous with no timeout still has to pass one to the store.
_FOREVER = timedelta(days=365)
# Seconds between looks at a barrier (and for lost workers) while waiting.
_CHECK_INTERVAL = 0.1
# Seconds between probes of the workers a barrier still waits for.
_PROBE_INTERVAL = 1.0
# Seconds between attempts to connect to a store that is not up yet.
_CONNECT_INTERVAL = 0.05


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


def _seconds(seconds):
    return f"{seconds:g} s"


def key_prefix():
    """Where the keys of distgrad's jobs live in the store. Under torchrun
    (TORCHELASTIC_RESTART_COUNT is set), each attempt of a run has keys of
    its own: a job restarted by torchrun meets in the store of its agent,
    which still holds what the attempt before left there."""
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        return _PREFIX
    run = os.environ.get("TORCHELASTIC_RUN_ID", "")
    return _PREFIX + f"{run}/attempt{restart}/"


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


def _open_store(method, rank, world_size, timeout, deadline):
    """The store of the init method; rank 0 hosts a TCPStore unless torchrun
    does. Torch's C++ log lines are kept out of stderr: the errors raised
    here say what failed."""
    if method.path is not None:
        store = c10d.FileStore(method.path, world_size)
        store.set_timeout(_as_timedelta(timeout))
        return store
    where = f"{method.host}:{method.port}"
    # torchrun's agent hosts the store at MASTER_ADDR:MASTER_PORT itself.
    hosted_by_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if rank == 0 and not hosted_by_agent:
        try:
            with _C._quiet_torch_logs():
                return c10d.TCPStore(method.host, method.port, world_size, is_master=True,
                                     timeout=_as_timedelta(timeout), wait_for_workers=False, multi_tenant=True)
        except Exception as error:
            raise DistError(
                f"rank 0 could not host the rendezvous store at {where} ({error}). Rank 0 hosts the store: "
                "MASTER_ADDR (or the host of init_method) must be an address of rank 0's machine, and the port "
                "must be free there; if another program or job holds it, choose another port (MASTER_PORT)"
            ) from error
    # Waits for the store with plain connections, in Python: Ctrl-C can end
    # the wait, and the deadline is this one (torch's client retries past it).
    host = "the torchrun agent" if hosted_by_agent else "rank 0"
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        try:
            socket.create_connection((method.host, method.port), timeout=max(0.01, min(1.0, remaining or 1.0))).close()
            break
        except OSError as error:
            if deadline is not None and time.monotonic() >= deadline:
                raise DistTimeoutError(
                    f"rank {rank} found no rendezvous store at {where} within {_seconds(timeout)} ({error}): "
                    f"{host} hosts it; is it running, with the same MASTER_ADDR and MASTER_PORT "
                    "(or init_method) as this worker?") from None
        time.sleep(_CONNECT_INTERVAL if deadline is None
                   else max(0.0, min(_CONNECT_INTERVAL, deadline - time.monotonic())))
    remaining = timeout if deadline is None else max(0.001, deadline - time.monotonic())
    try:
        with _C._quiet_torch_logs():
            store = c10d.TCPStore(method.host, method.port, world_size, is_master=False,
                                  timeout=_as_timedelta(remaining), wait_for_workers=False)
    except Exception as error:
        raise DistError(f"rank {rank} could not reach the rendezvous store at {where}: {error} "
                        f"(is what listens there the store {host} hosts?)") from error
    store.set_timeout(_as_timedelta(timeout))
    return store


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
        # The rendezvous as a whole (until the workers are known) takes at
        # most timeout.
        self.deadline = None if timeout <= 0 else time.monotonic() + timeout
        self.where = method.path or f"{method.host}:{method.port}"
        self.key = None
        self.names = None
        self._key_file = None
        self._joining = True
        prefix = key_prefix()
        store = _open_store(method, rank, world_size, timeout, self.deadline)
        self.store = store
        # The n-th job rank r joins through this store is every rank's n-th:
        # on a new store, the first.
        self.job = self._call("joining", store.add, prefix + f"joins/{rank}", 1)
        self.store = c10d.PrefixStore(prefix + f"job{self.job}", store)

    def remaining(self):
        """Seconds left of the rendezvous' timeout (0: none)."""
        return 0.0 if self.deadline is None else max(0.001, self.deadline - time.monotonic())

    def joined(self):
        """Called once the job is formed."""
        self._joining = False

    def _call(self, doing, operation, *args):
        """operation(*args) on the store, whose failure is reported as the
        store's (torch logs it with a C++ stack trace, which is kept out)."""
        try:
            with _C._quiet_torch_logs():
                return operation(*args)
        except Exception as error:
            if self.method.path is not None:
                raise DistError(f"rank {self.rank}: the rendezvous store {self.where} failed while {doing}: "
                                f"{error}") from error
            host = ("the torchrun agent" if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
                    else "rank 0")
            raise DistNetworkError(
                f"rank {self.rank} lost the rendezvous store at {self.where} while {doing} ({error}): "
                f"{host}, which hosts it, has probably exited") from error

    def _describe(self, rank):
        """"worker1 (rank 1)", or "rank 1" before the names are known."""
        if self.names is not None and rank < len(self.names):
            return f"{self.names[rank]} (rank {rank})"
        return f"rank {rank}"

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
                self._call("publishing the job key", self.store.set, "key_file", self._key_file.encode())
            path = self._get("key_file", "the path of the job key from rank 0",
                             "rank 0 did not publish the job key").decode()
            key = _job_key.read_private_key_file(path)
        elif key is None:
            _job_key.warn_unauthenticated(self.where)
            if self.rank == 0:
                self._call("publishing the job key", self.store.set, "key", secrets.token_hex(32).encode())
            key = _job_key.JobKey(self._get("key", "the job key from rank 0", "rank 0 did not publish the job key"))
        self.key = key

    def forget_key_file(self):
        """Rank 0 removes the key file once every worker has read it."""
        if self._key_file is not None:
            _job_key.remove_private_key_file(self._key_file)
            self._key_file = None

    def exchange(self, name, address):
        """Publishes this worker and returns (names, addresses) by rank."""
        self._set_signed(f"worker/{self.rank}", f"{name}\n{address}\n{self.world_size}".encode())
        names, addresses = self._published(name)
        seen = {}
        for r, n in enumerate(names):
            if n in seen:
                raise ValueError(f"worker name {n!r} is used by both rank {seen[n]} and rank {r}")
            seen[n] = r
        self.names = names
        return names, addresses

    def _published(self, name=None):
        """(names, addresses) of every worker, by rank, as each published them.
        A worker started with another world_size fails the rendezvous of
        every worker that sees it, and leaves word for the others."""
        names, addresses = [], []
        for r in range(self.world_size):
            entry = self._get_signed(f"worker/{r}", f"rank {r} to join", f"rank {r} did not join")
            other_name, other_address, other_world_size = entry.decode().rsplit("\n", 2)
            if name is not None and int(other_world_size) != self.world_size:
                message = (f"world_size differs between workers: worker {other_name!r} (rank {r}) was given "
                           f"{other_world_size}, worker {name!r} (rank {self.rank}) {self.world_size}; every "
                           "worker must be given the same world_size")
                self._set_signed("config_error", message.encode())
                raise ValueError(message)
            names.append(other_name)
            addresses.append(other_address)
        return names, addresses

    def _check_config_error(self):
        """While joining, raises the ValueError another worker found in the
        job's configuration (see _published)."""
        if self._joining and self.key is not None and self._call("checking the job's configuration", self.store.check, ["config_error"]):
            message = self.key.open("config_error", self._call("reading", self.store.get, "config_error"))
            if message is not None:
                raise ValueError(message.decode())

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
        if label == "joined":
            deadline = self.deadline if deadline is None else min(deadline, self.deadline or deadline)
        next_probe = time.monotonic() + _PROBE_INTERVAL
        # Checked often at first (the others are usually close behind), then
        # less often. check() does not block: a store wait() that times out
        # logs a warning each time.
        interval = 0.002
        arrived = set()
        while True:
            # Who is gone is read before who is missing: a worker that
            # arrived, passed the barrier and shut down is then seen arrived.
            lost = dict(lost_workers() if lost_workers else [])
            missing = self._missing(label, arrived)
            if not missing:
                return
            for rank in missing:
                if rank in lost:
                    raise DistNetworkError(f"{failure}: {lost[rank]}")
            self._check_config_error()
            if deadline is not None and time.monotonic() >= deadline:
                within = self.timeout if label == "joined" and self.deadline is not None else timeout
                raise DistTimeoutError(
                    f"only {self.world_size - len(missing)} of {self.world_size} workers reached '{label}' "
                    f"within {_seconds(within)}; missing: " + ", ".join(self._describe(r) for r in missing))
            if probe is not None and time.monotonic() >= next_probe:
                for rank in missing:
                    probe(rank)
                next_probe = time.monotonic() + _PROBE_INTERVAL
            time.sleep(interval)
            interval = min(interval * 2, _CHECK_INTERVAL)

    def _missing(self, label, arrived):
        """The ranks whose signed arrival at barrier label is not in the store.
        ``arrived`` holds the ranks already seen there, which are not asked
        again (a waiting worker asks about the others several times a
        second, and the store serves every worker of the job); it is updated."""
        doing = f"waiting for the workers to reach '{label}'"
        waiting = [r for r in range(self.world_size) if r not in arrived]
        keys = [f"barrier/{label}/{r}" for r in waiting]
        if len(waiting) > 1 and not self._call(doing, self.store.check, keys):
            present = [r for r, key in zip(waiting, keys) if self._call(doing, self.store.check, [key])]
        else:
            present = waiting if keys and self._call(doing, self.store.check, keys) else []
        if present:
            values = self._call(doing, self.store.multi_get, [f"barrier/{label}/{r}" for r in present])
            arrived.update(r for r, value in zip(present, values)
                           if self.key.open(f"barrier/{label}/{r}", value) is not None)
        return [r for r in range(self.world_size) if r not in arrived]

    def leave(self, timeout):
        """Called last by every worker; rank 0, which may host the store,
        returns only when every other worker is done with it."""
        self.forget_key_file()
        if self.rank != 0:
            self._set_signed(f"left/{self.rank}", b"")
            return
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        for r in range(1, self.world_size):
            remaining = 0 if deadline is None else max(0.001, deadline - time.monotonic())
            self._get_signed(f"left/{r}", f"{self._describe(r)} to leave",
                             f"{self._describe(r)} did not leave the job", remaining)

    def _set_signed(self, name, value):
        self._call(f"publishing {name}", self.store.set, name, self.key.sign(name, value))

    def _get_signed(self, name, what, late, timeout=None):
        """The signed value under name, waiting for one that verifies (a
        value written from outside the job is ignored)."""
        deadline = self.deadline if timeout is None else (None if timeout <= 0 else time.monotonic() + timeout)
        while True:
            remaining = 0 if deadline is None else max(0.001, deadline - time.monotonic())
            value = self.key.open(name, self._get(name, what, late, remaining,
                                                  self.timeout if timeout is None else timeout))
            if value is not None:
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise DistError(f"rank {self.rank}: the store holds a value for {what} that this job did "
                                "not write (is another process writing to the rendezvous store?)")
            time.sleep(_CHECK_INTERVAL)

    def _get(self, key, what, late, remaining=None, timeout=None):
        """The value under key, waiting for it until remaining seconds have
        passed (by default, until the rendezvous' deadline; 0: no limit).
        The store is polled (from Python, so that Ctrl-C ends the wait):
        torch's wait() logs a warning each time it times out."""
        if remaining is None:
            remaining, timeout = self.remaining(), self.timeout
        timeout = remaining if timeout is None else timeout
        deadline = None if remaining <= 0 else time.monotonic() + remaining
        doing = f"waiting for {what}"
        interval = 0.002
        while not self._call(doing, self.store.check, [key]):
            self._check_config_error()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                hint = ""
                if self.job > 1:
                    hint = (f" (this is the job number {self.job} that rank {self.rank} joins through this store: "
                            "every worker must call init_rpc as often, and no two may use the same rank)")
                raise DistTimeoutError(f"{late} within {_seconds(timeout)} (rank {self.rank} waited for it at the "
                                       f"rendezvous store {self.where}){hint}")
            time.sleep(interval if deadline is None else min(interval, deadline - now))
            interval = min(interval * 2, _CHECK_INTERVAL)
        return self._call(doing, self.store.get, key)
