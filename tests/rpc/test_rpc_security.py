"""What a process outside the job can do with the rendezvous store and the
workers' ports: read no key, steer no barrier, reach no worker from another
host in a local job. Each test runs its own job, against 127.0.0.1 (or all
interfaces where a store reachable from other hosts is the point)."""

import os
import socket

import pytest

import distgrad.rpc as rpc
from distgrad import DistError, DistTimeoutError, _job_key
from distgrad._rendezvous import InitMethod, Rendezvous
from distgrad._testing import Cluster
from tests import remote_fns
from tests.checks import free_port, job_rendezvous, listening_address, warn_again_of_a_missing_token
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job.
pytestmark = pytest.mark.no_cluster


def listening_sockets(pid):
    """(address, port) of every TCP socket process pid listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    with open(f"/proc/{pid}/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                address, port = local.split(":")
                found.append((socket.inet_ntoa(bytes.fromhex(address)[::-1]), int(port, 16)))
    return found


@pytest.fixture
def job():
    job = Cluster(2, root=ROOT).start()
    yield job
    job.stop()


def test_local_job_keeps_its_key_out_of_the_store(job):
    rendezvous = job_rendezvous()
    # The store holds the path of the key file, not a key...
    assert not rendezvous.store.check(["key"])
    path = rendezvous.store.get("key_file").decode()
    # ...and the file is gone once every worker has read it.
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"


def test_workers_of_a_local_job_listen_on_loopback_only(job):
    port = int(listening_address(1).rsplit(":", 1)[1])
    assert listening_address(1).startswith("127.0.0.1:")
    assert ("127.0.0.1", port) in listening_sockets(job.pid(1))
    assert all(address == "127.0.0.1" for address, p in listening_sockets(job.pid(1)) if p == port)


def test_forged_barrier_arrivals_do_not_complete_a_barrier(job):
    rendezvous = job_rendezvous()
    # A stranger marks worker1 as arrived, with and without a plausible value.
    rendezvous.store.set("barrier/probe/1", b"")
    with pytest.raises(DistTimeoutError, match=r"missing: worker1 \(rank 1\)"):
        rendezvous.barrier("probe", 0.3)
    rendezvous.store.set("barrier/probe/1", b"\0" * 32)
    with pytest.raises(DistTimeoutError, match=r"missing: worker1 \(rank 1\)"):
        rendezvous.barrier("probe", 0.3)


def test_a_worker_that_passed_a_barrier_and_left_is_not_missing(job):
    rendezvous = job_rendezvous()

    def worker1_arrives_and_leaves():
        # By the time this worker learns worker1 is gone, worker1 had
        # reached the barrier (signed, as a worker of the job does).
        rendezvous._set_signed("barrier/left/1", b"")
        return [(1, "worker 'worker1' (rank 1) has shut down")]

    rendezvous.barrier("left", 5, worker1_arrives_and_leaves)


def test_forged_address_is_ignored(tmp_path):
    rendezvous = Rendezvous(InitMethod(path=str(tmp_path / "store")), 0, 1, timeout=0.5)
    rendezvous.join_key()
    try:
        rendezvous.store.set("worker/0", b"worker0\n10.0.0.66:4444")
        with pytest.raises(DistError, match="the store holds a value for rank 0 to join that this job did not write"):
            rendezvous.exchange_addresses()
    finally:
        rendezvous.forget_key_file()


def test_a_store_other_hosts_reach_without_a_token_warns(monkeypatch):
    warn_again_of_a_missing_token(monkeypatch)
    monkeypatch.delenv("DISTGRAD_AUTH_TOKEN", raising=False)
    with pytest.warns(UserWarning, match="DISTGRAD_AUTH_TOKEN is not set and the rendezvous store at 0.0.0.0:"):
        rpc.init_rpc("solo", rank=0, world_size=1, init_method=f"tcp://0.0.0.0:{free_port()}")
    try:
        assert rpc.rpc_sync("solo", remote_fns.whoami) == "solo"
    finally:
        rpc.shutdown()


def test_workers_with_different_tokens_form_no_job(monkeypatch):
    monkeypatch.setenv("DISTGRAD_AUTH_TOKEN", "token of worker0")
    job = Cluster(2, root=ROOT, env={"DISTGRAD_AUTH_TOKEN": "token of worker1"}, rpc_timeout=2.0)
    with pytest.raises(DistError, match="the store holds a value for rank 1 to join that this job did not write"):
        job.start()


def test_same_token_on_every_worker(monkeypatch):
    monkeypatch.setenv("DISTGRAD_AUTH_TOKEN", "shared job token")
    job = Cluster(2, root=ROOT, env={"DISTGRAD_AUTH_TOKEN": "shared job token"}).start()
    try:
        rendezvous = job_rendezvous()
        assert not rendezvous.store.check(["key"]) and not rendezvous.store.check(["key_file"])
        assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
    finally:
        job.stop()


def test_key_file_must_be_private(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"k" * 32)
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="is not a private file of this user"):
        _job_key.read_private_key_file(str(path))
    path.chmod(0o600)
    assert _job_key.read_private_key_file(str(path)).mac(b"x") == _job_key.JobKey(b"k" * 32).mac(b"x")
