"""init_rpc's options under torch's names: RpcBackendOptions,
TensorPipeRpcBackendOptions, BackendType; what they set in a job (the default
timeout, the pool size, where workers meet), and changing the default
timeout afterwards. Jobs here are one worker, this process, calling itself."""

import contextlib
import threading
import time
from datetime import timedelta

import pytest
import torch

import distgrad
import distgrad.rpc as rpc
from distgrad.rpc import BackendType, RpcBackendOptions, TensorPipeRpcBackendOptions
from tests import remote_fns

# No cluster for this module (tests/cluster_autouse.py). Each test calls init_rpc here for a job of its own.
pytestmark = pytest.mark.no_cluster

# How long a call of arrive() waits for the others before giving up.
ARRIVAL_TIMEOUT = 1.0
_barrier = None


def arrive():
    """Waits until all the calls of the current probe are running at once;
    False if they could not all run within ARRIVAL_TIMEOUT."""
    try:
        _barrier.wait(timeout=ARRIVAL_TIMEOUT)
        return True
    except threading.BrokenBarrierError:
        return False


def can_run_at_once(n):
    """Whether this worker's pool runs n blocking Python calls at the same time."""
    global _barrier
    _barrier = threading.Barrier(n)
    return all(torch.futures.wait_all([rpc.rpc_async("solo", arrive) for _ in range(n)]))


@contextlib.contextmanager
def solo_job(*args, **kwargs):
    """A job of one worker, "solo", in this process."""
    rpc.init_rpc("solo", *args, rank=0, world_size=1, **kwargs)
    try:
        yield
    finally:
        rpc.shutdown()


@pytest.fixture
def store_file(tmp_path):
    return f"file://{tmp_path}/store"


def test_defaults():
    options = RpcBackendOptions()
    assert (options.rpc_timeout, options.init_method, options.num_worker_threads) == (60.0, "env://", 16)
    options = TensorPipeRpcBackendOptions()
    assert (options.rpc_timeout, options.init_method, options.num_worker_threads) == (60.0, "env://", 16)
    assert (options.device_maps, options.devices) == ({}, [])
    assert isinstance(options, RpcBackendOptions)
    assert (rpc.constants.DEFAULT_RPC_TIMEOUT_SEC, rpc.constants.DEFAULT_INIT_METHOD,
            rpc.constants.DEFAULT_NUM_WORKER_THREADS, rpc.constants.UNSET_RPC_TIMEOUT) == (60.0, "env://", 16, -1.0)


def test_attributes_can_change():
    options = TensorPipeRpcBackendOptions(num_worker_threads=8, rpc_timeout=30, init_method="tcp://h:1")
    options.rpc_timeout = 0.5
    options.init_method += "2"
    options.num_worker_threads = 2
    assert (options.rpc_timeout, options.init_method, options.num_worker_threads) == (0.5, "tcp://h:12", 2)
    assert isinstance(options.rpc_timeout, float)
    assert repr(options) == "TensorPipeRpcBackendOptions(rpc_timeout=0.5, init_method='tcp://h:12', num_worker_threads=2)"


def test_tensorpipe_options_are_keyword_only():
    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        TensorPipeRpcBackendOptions(8)
    # As in torch, RpcBackendOptions takes (rpc_timeout, init_method) by position.
    assert RpcBackendOptions(5, "tcp://h:1").rpc_timeout == 5.0


@pytest.mark.parametrize("make, expected", [
    (lambda: TensorPipeRpcBackendOptions(rpc_timeout=timedelta(seconds=1)),
     "TensorPipeRpcBackendOptions: incompatible constructor arguments: "
     "rpc_timeout must be a number of seconds, got timedelta"),
    (lambda: RpcBackendOptions(init_method=3),
     "RpcBackendOptions: incompatible constructor arguments: init_method must be a string, got int"),
    (lambda: TensorPipeRpcBackendOptions(num_worker_threads=2.5),
     "TensorPipeRpcBackendOptions: incompatible constructor arguments: "
     "num_worker_threads must be an integer, got float"),
    (lambda: setattr(RpcBackendOptions(), "rpc_timeout", "60"), "rpc_timeout must be a number of seconds, got str"),
    (lambda: setattr(RpcBackendOptions(), "num_worker_threads", True), "num_worker_threads must be an integer, got bool"),
], ids=["timedelta", "init_method", "threads", "set-timeout", "set-threads"])
def test_wrong_types(make, expected):
    with pytest.raises(TypeError) as excinfo:
        make()
    assert str(excinfo.value) == expected


@pytest.mark.parametrize("make, expected", [
    (lambda: RpcBackendOptions(rpc_timeout=-1), "rpc_timeout must be a non-negative number of seconds "
                                                "(0 means none), got -1"),
    (lambda: RpcBackendOptions(rpc_timeout=float("nan")), "rpc_timeout must be a non-negative number of seconds "
                                                          "(0 means none), got nan"),
    (lambda: TensorPipeRpcBackendOptions(num_worker_threads=0), "num_worker_threads must be at least 1, got 0"),
], ids=["timeout", "nan-timeout", "threads"])
def test_wrong_values(make, expected):
    with pytest.raises(ValueError) as excinfo:
        make()
    assert str(excinfo.value) == expected


@pytest.mark.parametrize("make, what", [
    (lambda: TensorPipeRpcBackendOptions(device_maps={"worker1": {0: 1}}), "device_maps must be empty, got {'worker1': {0: 1}}"),
    (lambda: TensorPipeRpcBackendOptions(devices=["cuda:0"]), "devices must be empty, got ['cuda:0']"),
    (lambda: TensorPipeRpcBackendOptions().set_device_map("worker1", {0: 1}),
     "the device map to 'worker1' must be empty, got {0: 1}"),
    (lambda: TensorPipeRpcBackendOptions().set_devices([0]), "devices must be empty, got [0]"),
    (lambda: setattr(TensorPipeRpcBackendOptions(), "devices", ["cuda:1"]), "devices must be empty, got ['cuda:1']"),
], ids=["device_maps", "devices", "set_device_map", "set_devices", "assign-devices"])
def test_cuda_settings_are_refused(make, what):
    with pytest.raises(ValueError) as excinfo:
        make()
    assert str(excinfo.value) == (
        f"CUDA is not supported by distgrad: tensors travel between CPU memories only, so {what}")


def test_empty_cuda_settings_are_accepted():
    options = TensorPipeRpcBackendOptions(device_maps={}, devices=[], _transports=["uv"], _channels=["basic"])
    options.set_devices([])
    options.set_device_map("worker1", {})
    assert (options.device_maps, options.devices) == ({}, [])


def test_backend_type():
    assert repr(BackendType.TENSORPIPE) == "BackendType.TENSORPIPE"
    assert BackendType["TENSORPIPE"] is BackendType.TENSORPIPE
    assert [b.name for b in BackendType] == ["DISTGRAD", "TENSORPIPE"]


@pytest.mark.parametrize("kwargs, expected", [
    ({"backend": "TENSORPIPE"}, "Argument backend must be a member of BackendType, got 'TENSORPIPE'"),
    ({"rpc_backend_options": {"init_method": "env://"}},
     "Argument rpc_backend_options must be an instance of RpcBackendOptions, got dict"),
    ({"backend": BackendType.TENSORPIPE, "rpc_backend_options": RpcBackendOptions()},
     "`rpc_backend_options` must be a `TensorPipeRpcBackendOptions` for BackendType.TENSORPIPE, "
     "got RpcBackendOptions"),
], ids=["backend", "options", "tensorpipe-needs-its-options"])
def test_init_rpc_refuses_wrong_types(kwargs, expected):
    with pytest.raises(TypeError) as excinfo:
        rpc.init_rpc("w", rank=0, world_size=1, **kwargs)
    assert str(excinfo.value) == expected


@pytest.mark.parametrize("backend", [None, BackendType.TENSORPIPE, BackendType.DISTGRAD])
def test_options_set_up_the_job(store_file, backend):
    options = TensorPipeRpcBackendOptions(init_method=store_file, rpc_timeout=7, num_worker_threads=2)
    with solo_job(backend, rpc_backend_options=options):
        assert rpc.get_rpc_timeout() == 7.0
        assert can_run_at_once(2)
        assert not can_run_at_once(3)


def test_plain_options_and_distgrad_backend(store_file):
    with solo_job(BackendType.DISTGRAD, rpc_backend_options=RpcBackendOptions(3, store_file, 3)):
        assert rpc.get_rpc_timeout() == 3.0
        assert can_run_at_once(3)
        assert not can_run_at_once(4)


def test_init_rpc_keywords_override_the_options(store_file):
    # The options point at no rendezvous at all: init_method= wins.
    options = RpcBackendOptions(rpc_timeout=7, init_method="tcp://127.0.0.1:1", num_worker_threads=2)
    with solo_job(rpc_backend_options=options, init_method=store_file, timeout=0, num_worker_threads=3):
        assert rpc.get_rpc_timeout() == 0.0
        assert can_run_at_once(3)
        assert not can_run_at_once(4)


def test_default_pool_is_torchs(store_file):
    # Without options the pool is as large as torch's (16): a program whose
    # handlers block, waiting for each other, behaves the same on both.
    with solo_job(init_method=store_file):
        assert rpc.get_rpc_timeout() == 60.0
        assert can_run_at_once(16)
        assert not can_run_at_once(17)


def test_set_rpc_timeout_affects_later_calls(store_file):
    with solo_job(init_method=store_file):
        in_flight = rpc.rpc_async("solo", remote_fns.sleep_and_return, (0.6, "kept its timeout"))
        rpc._set_rpc_timeout(0.2)
        assert rpc.get_rpc_timeout() == 0.2
        start = time.monotonic()
        with pytest.raises(distgrad.DistTimeoutError) as excinfo:
            rpc.rpc_sync("solo", remote_fns.sleep_and_return, (0.6, "late"))
        assert time.monotonic() - start < 0.55
        assert str(excinfo.value) == "RPC to worker 'solo' (rank 0) timed out after 0.2 seconds"
        # A call's own timeout still wins over the default.
        assert rpc.rpc_sync("solo", remote_fns.sleep_and_return, (0.3, "own"), timeout=5) == "own"
        assert in_flight.wait() == "kept its timeout"
        rpc._set_rpc_timeout(0)  # none
        assert rpc.get_rpc_timeout() == 0.0
        assert rpc.rpc_sync("solo", remote_fns.sleep_and_return, (0.3, "no timeout")) == "no timeout"


@pytest.mark.parametrize("value, error, expected", [
    (-1, ValueError, "rpc_timeout must be a non-negative number of seconds (0 means none), got -1"),
    (timedelta(seconds=1), TypeError, "rpc_timeout must be a number of seconds, got timedelta"),
])
def test_set_rpc_timeout_refuses_wrong_values(store_file, value, error, expected):
    with solo_job(init_method=store_file):
        with pytest.raises(error) as excinfo:
            rpc._set_rpc_timeout(value)
        assert str(excinfo.value) == expected
        assert rpc.get_rpc_timeout() == 60.0


def test_timeouts_need_a_job():
    for call in (rpc.get_rpc_timeout, lambda: rpc._set_rpc_timeout(1)):
        with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
            call()
