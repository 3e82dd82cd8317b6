"""init_rpc misuse (arguments, environment, init methods) fails clearly
and leaves a running job alone."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns

# No cluster for this module (tests/cluster_autouse.py). Most tests here call init_rpc with no job around;
# the two that need one ask for `cluster`.
pytestmark = pytest.mark.no_cluster

WORLD_SIZE = 2


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-2, 2), (0, 0), (5, 3)])
def test_rank_out_of_range(rank, world_size):
    with pytest.raises(ValueError) as excinfo:
        rpc.init_rpc("w", rank=rank, world_size=world_size, init_method="tcp://127.0.0.1:1")
    assert str(excinfo.value) == f"rank {rank} is out of range for world_size {world_size}"


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_name(name):
    with pytest.raises(ValueError, match="a worker name must be a non-empty string"):
        rpc.init_rpc(name, rank=0, world_size=1, init_method="tcp://127.0.0.1:1")


def test_bad_number_of_threads():
    with pytest.raises(ValueError, match="num_worker_threads must be at least 1, got 0"):
        rpc.init_rpc("w", rank=0, world_size=1, init_method="tcp://127.0.0.1:1", num_worker_threads=0)


def test_rank_and_world_size_by_position_are_refused_with_a_hint():
    # torch's order is (name, backend, rank, world_size, rpc_backend_options).
    with pytest.raises(TypeError) as excinfo:
        rpc.init_rpc("w", 0, 1, init_method="tcp://127.0.0.1:1")
    assert str(excinfo.value) == (
        "Argument backend must be a member of BackendType, got 0 (init_rpc takes torch's positional order: "
        "name, backend, rank, world_size; pass rank= and world_size= by keyword)")


@pytest.mark.parametrize("environment, kwargs, expected", [
    ({"WORLD_SIZE": "1"}, {}, "init_rpc needs rank: pass rank= or set the environment variable RANK "
                              "(torchrun sets it)"),
    ({"RANK": "0"}, {}, "init_rpc needs world_size: pass world_size= or set the environment variable WORLD_SIZE "
                        "(torchrun sets it)"),
    ({}, {"rank": 0}, "init_rpc needs world_size: pass world_size= or set the environment variable WORLD_SIZE "
                      "(torchrun sets it)"),
    ({"RANK": "one", "WORLD_SIZE": "2"}, {}, "the environment variable RANK must be an integer, got 'one'"),
    ({"RANK": "1", "WORLD_SIZE": "1"}, {}, "rank 1 is out of range for world_size 1"),
], ids=["no-rank", "no-world-size", "rank-only", "not-an-integer", "out-of-range"])
def test_rank_and_world_size_from_the_environment(monkeypatch, environment, kwargs, expected):
    for variable in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as excinfo:
        rpc.init_rpc("w", init_method="tcp://127.0.0.1:1", **kwargs)
    assert str(excinfo.value) == expected


@pytest.mark.parametrize("kwargs, error, expected", [
    ({"rank": "0", "world_size": 1}, TypeError, "rank must be an integer, got str"),
    ({"rank": 0, "world_size": 1.0}, TypeError, "world_size must be an integer, got float"),
    ({"rank": 0, "world_size": 1, "timeout": -1}, ValueError,
     "timeout must be a non-negative number of seconds (0 means none), got -1"),
    ({"rank": 0, "world_size": 1, "timeout": "60"}, TypeError, "timeout must be a number of seconds, got str"),
    ({"rank": 0, "world_size": 1, "num_worker_threads": "4"}, TypeError,
     "num_worker_threads must be an integer, got str"),
], ids=["rank", "world_size", "negative-timeout", "timeout-type", "threads-type"])
def test_wrong_argument_types(kwargs, error, expected):
    with pytest.raises(error) as excinfo:
        rpc.init_rpc("w", init_method="tcp://127.0.0.1:1", **kwargs)
    assert str(excinfo.value) == expected


@pytest.mark.parametrize("init_method, expected", [
    ("tcp://127.0.0.1", "init_method must be 'env://', 'tcp://host:port' or 'file:///path', got 'tcp://127.0.0.1'"),
    ("tcp://:29500", "init_method must be 'env://', 'tcp://host:port' or 'file:///path', got 'tcp://:29500'"),
    ("tcp://h:70000", "init_method must be 'env://', 'tcp://host:port' or 'file:///path', got 'tcp://h:70000'"),
    ("tcp://h:1?rank=0", "init_method must be 'env://', 'tcp://host:port' or 'file:///path', got 'tcp://h:1?rank=0'"),
    ("udp://h:1", "init_method must be 'env://', 'tcp://host:port' or 'file:///path', got 'udp://h:1'"),
    ("file://relative/store", "a file:// init_method names a file by its absolute path (file:///path/to/file), "
                              "got 'file://relative/store'"),
    ("file:///tmp/", "a file:// init_method names a file by its absolute path (file:///path/to/file), "
                     "got 'file:///tmp/'"),
])
def test_bad_init_method(init_method, expected):
    with pytest.raises(ValueError) as excinfo:
        rpc.init_rpc("w", rank=0, world_size=1, init_method=init_method)
    assert str(excinfo.value) == expected


@pytest.mark.parametrize("environment, expected", [
    ({}, "init_method 'env://' needs the environment variables MASTER_ADDR, MASTER_PORT"),
    ({"MASTER_ADDR": "127.0.0.1"}, "init_method 'env://' needs the environment variable MASTER_PORT"),
    ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "port"},
     "the environment variable MASTER_PORT must be a port number, got 'port'"),
])
def test_env_init_method_needs_the_master_address(monkeypatch, environment, expected):
    for variable in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as excinfo:
        rpc.init_rpc("w", rank=0, world_size=1)
    assert str(excinfo.value) == expected


def test_calls_before_init_rpc():
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process; call init_rpc\\(\\) first"):
        rpc.get_worker_info()
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
        rpc.rpc_sync("worker1", torch.add, (torch.ones(1), 1))


def test_second_init_rpc_in_the_same_process(cluster):
    for name, rank in [("worker0", 0), ("another", 1)]:
        with pytest.raises(RuntimeError) as excinfo:
            rpc.init_rpc(name, rank=rank, world_size=2, init_method=cluster.init_method)
        assert str(excinfo.value) == (
            "init_rpc() was already called in this process (as worker 'worker0'); "
            "call shutdown() before initializing again"
        )
    # The job is untouched.
    assert rpc.get_worker_info() == rpc.WorkerInfo("worker0", 0)
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
    assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"


def test_init_rpc_on_a_worker_that_is_running(cluster):
    # worker1's main thread is inside shutdown(), waiting for the job to end.
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker1", rpc.init_rpc, ("again",), {"rank": 1, "world_size": 2, "init_method": cluster.init_method},
                     timeout=10)
    assert "init_rpc() was already called in this process (as worker 'worker1')" in str(excinfo.value)
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"


@pytest.mark.parametrize("variable, value, expected", [
    ("DISTGRAD_MAX_MESSAGE_BYTES", "lots", "DISTGRAD_MAX_MESSAGE_BYTES must be a positive integer, got 'lots'"),
    ("DISTGRAD_MAX_MESSAGE_BYTES", "0", "DISTGRAD_MAX_MESSAGE_BYTES must be a positive integer, got '0'"),
    ("DISTGRAD_SHM_ARENA_BYTES", "-1", "DISTGRAD_SHM_ARENA_BYTES must be a non-negative integer, got '-1'"),
])
def test_invalid_size_settings_are_refused(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as excinfo:
        rpc.init_rpc("w", rank=0, world_size=1, init_method="tcp://127.0.0.1:1")
    assert str(excinfo.value) == expected
