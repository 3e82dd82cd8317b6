"""init_rpc misuse fails clearly and leaves a running job alone."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns

WORLD_SIZE = 2


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-1, 2), (0, 0), (5, 3)])
def test_rank_out_of_range(rank, world_size):
    with pytest.raises(ValueError) as excinfo:
        rpc.init_rpc("w", rank, world_size, init_method="tcp://127.0.0.1:1")
    assert str(excinfo.value) == f"rank {rank} is out of range for world_size {world_size}"


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_name(name):
    with pytest.raises(ValueError, match="a worker name must be a non-empty string"):
        rpc.init_rpc(name, 0, 1, init_method="tcp://127.0.0.1:1")


def test_bad_number_of_threads():
    with pytest.raises(ValueError, match="num_worker_threads must be at least 1, got 0"):
        rpc.init_rpc("w", 0, 1, init_method="tcp://127.0.0.1:1", num_worker_threads=0)


def test_calls_before_init_rpc():
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process; call init_rpc\\(\\) first"):
        rpc.get_worker_info()
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
        rpc.rpc_sync("worker1", torch.add, (torch.ones(1), 1))


def test_second_init_rpc_in_the_same_process(cluster):
    for name, rank in [("worker0", 0), ("another", 1)]:
        with pytest.raises(RuntimeError) as excinfo:
            rpc.init_rpc(name, rank, 2, init_method=cluster.init_method)
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
        rpc.rpc_sync("worker1", rpc.init_rpc, ("again", 1, 2), {"init_method": cluster.init_method}, timeout=10)
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
        rpc.init_rpc("w", 0, 1, init_method="tcp://127.0.0.1:1")
    assert str(excinfo.value) == expected
