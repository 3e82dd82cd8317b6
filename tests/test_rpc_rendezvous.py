"""Where the workers of a job meet: a file:// store, and a store this
process already serves. Each test runs its own job."""

import socket

import torch.distributed as c10d

import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.conftest import ROOT


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_file_init_method(tmp_path):
    store = tmp_path / "store"
    job = Cluster(2, root=ROOT, init_method=f"file://{store}").start()
    try:
        assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
        assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
    finally:
        job.stop()
    assert job.returncode(1) == 0
    # The last worker to close the store removes its file.
    assert not store.exists()


def test_jobs_share_a_store_served_in_this_process():
    # Rank 0 joins a TCPStore server that this process already runs at the
    # address (as init_process_group leaves one), instead of hosting another,
    # and leaves the keys of others alone; a second job works there too.
    port = free_port()
    server = c10d.TCPStore("127.0.0.1", port, 1, is_master=True, wait_for_workers=False, multi_tenant=True)
    server.set("theirs", "kept")
    for _ in range(2):
        rpc.init_rpc("solo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
        try:
            assert rpc.rpc_sync("solo", remote_fns.whoami) == "solo"
        finally:
            rpc.shutdown()
    assert server.get("theirs") == b"kept"
