"""The job (init_rpc, shutdown), its workers, and calls (rpc_sync,
rpc_async, remote)."""

import atexit
import ipaddress
import numbers
import os
import socket
import threading
import warnings
from typing import Any, Dict, NamedTuple, Optional

import torch

from .. import _C, _python_call, _torch_private
from .._rendezvous import Rendezvous, parse_init_method
from . import profiling
from .options import (
    check_init_method, check_num_worker_threads, check_seconds, resolve as resolve_options, seconds_or_none,
)
from .rref import RRef, ScriptRRef

__all__ = [
    "WorkerInfo", "init_rpc", "rpc_sync", "rpc_async", "remote", "get_rpc_timeout", "get_worker_info",
    "get_worker_infos", "shutdown", "debug_info",
]


class WorkerInfo(NamedTuple):
    """A worker of the job: its name and its rank (``id``)."""

    name: str
    id: int


class _Job:
    """What init_rpc set up in this process (the workers themselves are known
    to the agent only: see get_worker_info)."""

    def __init__(self, rendezvous):
        self.rendezvous = rendezvous
        self.shutting_down = False


_lock = threading.Lock()
_job = None


def init_rpc(name, backend=None, rank=-1, world_size=None, rpc_backend_options=None, *,
             init_method=None, timeout=None, num_worker_threads=None):
    """Joins the job as worker ``name`` with ``rank`` and returns when all
    ``world_size`` workers are known.

    The positional order is torch's: ``init_rpc(name, backend, rank,
    world_size, rpc_backend_options)``. ``rank`` and ``world_size`` default
    to the environment variables RANK and WORLD_SIZE (set by torchrun).
    ``backend`` is a BackendType; ``rpc_backend_options`` an RpcBackendOptions
    (or TensorPipeRpcBackendOptions) giving ``init_method``, ``rpc_timeout``
    and ``num_worker_threads``. The keywords ``init_method``, ``timeout``
    (seconds) and ``num_worker_threads``, when given, override the options.

    ``init_method`` is ``env://`` (MASTER_ADDR, MASTER_PORT),
    ``tcp://host:port`` or ``file:///path``. ``timeout`` bounds the
    rendezvous and is the default timeout of calls; 0 means none."""
    global _job
    options = resolve_options(backend, rpc_backend_options)
    init_method = options.init_method if init_method is None else init_method
    timeout = options.rpc_timeout if timeout is None else timeout
    num_worker_threads = options.num_worker_threads if num_worker_threads is None else num_worker_threads
    check_init_method(init_method)
    check_seconds("timeout", timeout)
    timeout = seconds_or_none(timeout)
    check_num_worker_threads(num_worker_threads)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a worker name must be a non-empty string, got {name!r}")
    rank = _from_environment(rank, "rank", "RANK")
    world_size = _from_environment(world_size, "world_size", "WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is out of range for world_size {world_size}")
    max_message_bytes = _byte_setting("DISTGRAD_MAX_MESSAGE_BYTES", 16 << 30, minimum=1)
    shared_memory_bytes = _byte_setting("DISTGRAD_SHM_ARENA_BYTES", 1 << 30, minimum=0)
    handshake_timeout = _seconds_setting("DISTGRAD_HANDSHAKE_TIMEOUT", 10.0)
    frame_timeout = _seconds_setting("DISTGRAD_FRAME_TIMEOUT", 60.0)
    method = parse_init_method(init_method)
    with _lock:
        if _job is not None or _C._agent_is_running():
            as_worker = f" (as worker {_C._agent_self()[0]!r})" if _job is not None else ""
            raise RuntimeError(f"init_rpc() was already called in this process{as_worker}; "
                               "call shutdown() before initializing again")
        rendezvous = Rendezvous(method, rank, world_size, timeout)
        try:
            rendezvous.join_key()
            # Only the interface that reaches the store: a local job listens
            # on loopback, out of reach of other hosts.
            host = os.environ.get("DISTGRAD_LISTEN_ADDR") or rendezvous.local_address()
            advertised = _advertised_address(rendezvous, host)
            listen_port = _C._agent_init(name, rank, world_size, rendezvous.key.mac, rendezvous.key.verify,
                                         num_worker_threads, float(timeout), host, max_message_bytes,
                                         shared_memory_bytes, handshake_timeout, frame_timeout)
            try:
                names, addresses = rendezvous.exchange(name, f"{advertised}:{listen_port}")
                _C._agent_start(names, addresses)
                _job = _Job(rendezvous)
                # Every worker knows the job (in C++ and here) before any
                # returns and makes calls.
                rendezvous.barrier("joined", timeout, _C._agent_lost_peers, failure="init_rpc failed",
                                   probe=_C._agent_probe)
                rendezvous.joined()
            except BaseException:
                _job = None
                _C._agent_shutdown()
                raise
        finally:
            rendezvous.forget_key_file()


_warned_loopback = False


def _advertised_address(rendezvous, listen_host):
    """The address the other workers are told to reach this one at:
    DISTGRAD_ADVERTISE_ADDR, else the one it listens on (the interface
    towards the store when that is every interface). Warns, once, when that
    is a loopback address though the store is on another host."""
    global _warned_loopback
    advertised = os.environ.get("DISTGRAD_ADVERTISE_ADDR")
    if not advertised:
        advertised = rendezvous.local_address() if listen_host == "0.0.0.0" else listen_host
    if not _warned_loopback and _is_loopback(advertised) and _store_elsewhere(rendezvous.method):
        _warned_loopback = True
        warnings.warn(
            f"worker {rendezvous.rank} will be reached at {advertised}, a loopback address, but the rendezvous "
            f"store is at {rendezvous.where}, on another host: workers elsewhere cannot reach it. Set "
            "DISTGRAD_ADVERTISE_ADDR to an address of this host the others reach (and DISTGRAD_LISTEN_ADDR to "
            "that address or 0.0.0.0), or check that this host resolves its name to its network address",
            stacklevel=3)
    return advertised


def _store_elsewhere(method):
    """Whether the store is at a network address (not a file, not loopback,
    not 0.0.0.0): other hosts may then take part in the job."""
    if method.path is not None:
        return False
    try:
        address = ipaddress.ip_address(socket.gethostbyname(method.host))
    except (OSError, ValueError):
        return False
    return not (address.is_loopback or address.is_unspecified)


def _is_loopback(host):
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _from_environment(value, argument, variable):
    """value, or when it is unset (None or -1), the integer in the
    environment variable."""
    if value is None or value == -1:
        text = os.environ.get(variable)
        if not text:
            raise ValueError(f"init_rpc needs {argument}: pass {argument}= or set the environment variable "
                             f"{variable} (torchrun sets it)")
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"the environment variable {variable} must be an integer, got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer, got {type(value).__name__}")
    return int(value)


def _byte_setting(variable, default, minimum):
    """A size from the environment:

    DISTGRAD_MAX_MESSAGE_BYTES: the largest message (tensor data, and
    metadata) a worker accepts; larger frames are refused. Default 16 GiB.

    DISTGRAD_SHM_ARENA_BYTES: the shared memory through which large tensors
    go to workers on the same machine (0 turns it off). Pages are only used
    as large tensors are in flight. Default 1 GiB."""
    value = os.environ.get(variable, str(default))
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        kind = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise ValueError(f"{variable} must be {kind}, got {value!r}")
    return number


def _seconds_setting(variable, default):
    """A duration in seconds from the environment:

    DISTGRAD_HANDSHAKE_TIMEOUT: how long a new connection may take to prove
    it belongs to the job before it is dropped. Default 10.
    DISTGRAD_FRAME_TIMEOUT: how long a peer may pause in the middle of a
    message before its connection is dropped (and the peer lost). Default 60."""
    value = os.environ.get(variable)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{variable} must be a positive number of seconds, got {value!r}")
    return seconds


def _require_job():
    job = _job
    if job is None:
        raise RuntimeError("distgrad RPC is not initialized in this process; call init_rpc() first")
    return job


def get_worker_info(worker_name=None):
    """The WorkerInfo of the worker called ``worker_name``, or of this worker
    when it is None."""
    _require_job()
    if worker_name is None:
        return WorkerInfo(*_C._agent_self())
    if not isinstance(worker_name, str):
        raise TypeError(f"worker_name must be a str, got {type(worker_name).__name__}")
    return WorkerInfo(*_C._agent_worker(worker_name))


def get_rpc_timeout():
    """The default timeout of calls from this worker, in seconds (0: none):
    the init_rpc timeout, or what _set_rpc_timeout set since."""
    _require_job()
    return float(_C._agent_default_timeout())


def _set_rpc_timeout(rpc_timeout):
    """Sets the default timeout of the calls this worker makes from now on
    (seconds, 0 for none); calls already made keep theirs."""
    check_seconds("rpc_timeout", rpc_timeout)
    _require_job()
    _C._agent_set_default_timeout(seconds_or_none(rpc_timeout))


def _worker_of_rank(rank):
    _require_job()
    return WorkerInfo(*_C._agent_worker(rank))


def get_worker_infos():
    """The WorkerInfo of every worker, by rank."""
    _require_job()
    return [WorkerInfo(*info) for info in _C._agent_workers()]


def _rank(to):
    if isinstance(to, WorkerInfo):
        return to.id
    return _C._rank_of(to)


def _request(func, args, kwargs):
    """The request that runs func(*args, **kwargs) on the callee, and how to
    decode its result (None: as it is)."""
    args = tuple(args) if args is not None else ()
    kwargs = kwargs or {}
    inner = getattr(func, "_wrapped_async_rpc_function", None)
    if isinstance(inner, torch.jit.ScriptFunction):
        func = inner  # the callee waits for the Future[T] it returns
    if isinstance(func, torch.jit.ScriptFunction):
        return _C._script_request(func, *args, **kwargs), None
    if isinstance(func, str):
        if kwargs:
            raise ValueError("keyword arguments are not supported when func is given by name")
        return _C._named_request(func, args), None
    builtin = _torch_private.find_builtin(func)
    if builtin is not None:
        return _C._builtin_request(builtin, *args, **kwargs), None
    if not callable(func):
        raise TypeError(f"func must be callable or the name of a TorchScript function, got {type(func).__name__}")
    return _C._python_request(*_python_call.serialize((func, args, kwargs))), _python_call.decode_result


def _invoke(to, func, args, kwargs, timeout, future):
    dst = _rank(to)
    request, decode = _request(func, args, kwargs)
    if profiling.enabled():
        return _invoke_profiled(dst, func, request, decode, timeout, future)
    if future is None:
        result = _C._invoke(dst, request, float(timeout), None, None)
        return result if decode is None else decode(result)
    return _C._invoke(dst, request, float(timeout), future, decode)


def _event_name(kind, func, dst):
    return f"rpc_{kind}#{profiling.func_name(func)}({get_worker_info().name} -> {_worker_of_rank(dst).name})"


def _invoke_profiled(dst, func, request, decode, timeout, future):
    """_invoke inside a profiler span, which ends when the call does."""
    with profiling.span(_event_name("sync" if future is None else "async", func, dst)) as span:
        if future is None:
            result = _C._invoke(dst, request, float(timeout), None, None)
            return result if decode is None else decode(result)
        future = _C._invoke(dst, request, float(timeout), future, decode)
        return span._call_end_callbacks_on_future(future)


def debug_info():
    """Counters of this worker's RPC agent: ``num_pending_calls`` (calls from
    here awaiting their reply), ``num_active_requests`` (calls being served
    here), ``shared_memory_bytes_in_use`` (bytes of this worker's shared
    memory arena that tensors on other workers still use),
    ``num_results_sent_in_place`` (results of builtin operators computed in
    that arena and sent from there without a copy), and of its RRefs:
    ``num_owner_rrefs`` (values alive here), ``num_user_rrefs`` (references
    held here to values owned elsewhere), ``num_forks`` (references other
    workers hold to values owned here) and ``num_pending_forks`` (references
    this worker passed on whose owner has not yet acknowledged them); and of
    DistributedOptimizer: ``num_native_optimizers`` (native optimizers held
    here) and ``num_native_optimizer_steps`` (steps they ran)."""
    _require_job()
    return dict(_C._agent_debug_info())


def rpc_sync(to, func, args=(), kwargs=None, timeout=-1.0):
    """Runs ``func(*args, **kwargs)`` on worker ``to`` (a name, a rank or a
    WorkerInfo) and returns its result. An error ``func`` raises is raised
    here: a built-in exception as its own type, any other as RuntimeError
    naming its type and the worker. ``timeout`` is in seconds: -1 means the
    default given to init_rpc, 0 means no timeout.

    ``func`` may be a builtin torch operator (run by the dispatcher on the
    callee, without Python), a TorchScript function (run by the TorchScript
    interpreter on the callee, without the GIL), its qualified name as a
    string (then without ``kwargs``), or any Python callable the callee can
    import (pickled by reference, run under the GIL)."""
    return _invoke(to, func, args, kwargs, timeout, None)


class _Future(torch.futures.Future):
    """The torch.futures.Future of rpc_async, whose wait() Ctrl-C can end
    (torch's waits in C++ until the result comes)."""

    def wait(self):
        _C._wait_future(self)
        return super().wait()


def rpc_async(to, func, args=(), kwargs=None, timeout=-1.0):
    """Like rpc_sync (the same ``to``, ``func``, ``args``, ``kwargs`` and
    ``timeout``), but returns at once a ``torch.futures.Future`` of the
    result; its ``wait()`` raises the call's error."""
    return _invoke(to, func, args, kwargs, timeout, _Future())


def remote(to: Any, func: Any, args: Any = (), kwargs: Optional[Dict[str, Any]] = None,
           timeout: float = -1.0) -> RRef:
    """Runs ``func(*args, **kwargs)`` on worker ``to``, which keeps the result,
    and returns an RRef to it at once. An error raised by ``func`` surfaces
    when the RRef is used (``to_here``, ``local_value``, a proxy call).
    ``timeout`` bounds the call as for rpc_sync.

    In TorchScript, ``to`` is a worker name and ``func`` the qualified name of
    a TorchScript function: ``remote("worker1", "pkg.mod.fn", (t,))``."""
    if torch.jit.is_scripting():
        assert isinstance(to, str)
        assert isinstance(func, str)
        return ScriptRRef(torch.ops.dist_rpc.remote(to, func, args, timeout))
    else:
        return _remote(to, func, args, kwargs, timeout)


def _remote(to, func, args, kwargs, timeout):
    dst = _rank(to)
    request, _ = _request(func, args, kwargs)
    if profiling.enabled():
        with profiling.span(_event_name("remote", func, dst)):
            return RRef._from_handle(_C._remote(dst, request, float(timeout)))
    return RRef._from_handle(_C._remote(dst, request, float(timeout)))


def shutdown(graceful=True, timeout=None):
    """Leaves the job. A graceful shutdown first waits until every worker has
    called shutdown and no call is outstanding anywhere (at most ``timeout``
    seconds per step, the init_rpc timeout by default, 0 for no limit), then
    closes everything. ``graceful=False`` closes at once and fails what is
    pending. Calling it again, or without init_rpc, does nothing."""
    global _job
    with _lock:
        job = _job
        if job is None or job.shutting_down:
            return
        job.shutting_down = True
    # The waits below run without the lock: the job keeps serving calls
    # meanwhile, including calls that touch this module (such as init_rpc
    # failing because the job is still there).
    try:
        if graceful:
            if timeout is None:
                timeout = _C._agent_default_timeout()
            job.rendezvous.barrier("shutdown", timeout, _C._agent_lost_peers, probe=_C._agent_probe)
            # Every worker has stopped making calls: references held here
            # are released, so that owners keep nothing past the job.
            _C._rref_release_users()
            if not _C._agent_wait_idle(float(timeout)):
                raise TimeoutError(f"calls still outstanding after {timeout} seconds")
            job.rendezvous.barrier("idle", timeout, _C._agent_lost_peers, probe=_C._agent_probe)
    finally:
        with _lock:
            try:
                _C._agent_shutdown()
            except BaseException:
                job.shutting_down = False  # refused (called from a runtime thread): still running
                raise
            _job = None
    if graceful:
        job.rendezvous.leave(timeout)


# In scripted code rpc_async and rpc_sync compile to the dist_rpc operators,
# which take func by name: rpc_async(dst, "pkg.mod.fn", (t1, t2)).
_torch_private.register_builtin(rpc_async, "dist_rpc::rpc_async")
_torch_private.register_builtin(rpc_sync, "dist_rpc::rpc_sync")


@atexit.register
def _shutdown_at_exit():
    shutdown(graceful=False)
