"""How workers find each other when launched: the address a worker
advertises (DISTGRAD_ADVERTISE_ADDR, and a warning when it cannot be right),
and a job torchrun restarts."""

import sys
import textwrap
import warnings

import pytest

import distgrad.rpc as rpc
from distgrad._rendezvous import InitMethod
from distgrad._testing import Cluster
from distgrad.rpc import api
from tests import cluster_backend, remote_fns
from tests.checks import listening_address, wait_for, warn_again_of_a_loopback_address
from tests.conftest import ROOT
from tests.rpc.test_rpc_rendezvous import run_programs

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job, or none.
pytestmark = pytest.mark.no_cluster


def test_advertised_address_can_be_set():
    # worker1 still listens on 127.0.0.1, but tells the others a name.
    job = Cluster(2, root=ROOT, env={"DISTGRAD_ADVERTISE_ADDR": "localhost"}).start()
    try:
        assert listening_address(0).startswith("127.0.0.1:")
        assert listening_address(1).startswith("localhost:")
        assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
        assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
    finally:
        job.stop()


def test_a_cluster_joins_through_the_backend_it_is_given():
    # As tools/bench.py runs its jobs on torch.distributed.rpc: every process
    # joins and leaves through the object named, and the workers import the
    # modules listed first.
    job = Cluster(2, root=ROOT, backend="tests.cluster_backend:RECORDING", imports=["json.tool"])
    job.start()
    try:
        assert cluster_backend.RECORDING.joined_as == "worker0"
        # Set just after its init returns, which may be a moment after ours.
        wait_for(lambda: rpc.rpc_sync("worker1", cluster_backend.joined_as) == "worker1", 10.0,
                 "worker1 to have joined through the backend")
        assert rpc.rpc_sync("worker1", cluster_backend.imported, ("json.tool",))
    finally:
        job.stop()
    assert cluster_backend.RECORDING.left == (True, 15.0)
    assert job.returncode(1) == 0


class FakeRendezvous:
    """What _advertised_address reads of a rendezvous; nothing is contacted."""

    def __init__(self, host):
        self.method = InitMethod(host=host, port=29500)
        self.where = f"{host}:29500"
        self.rank = 3

    def local_address(self):
        return "127.0.0.1"


@pytest.fixture
def fresh_warning(monkeypatch):
    warn_again_of_a_loopback_address(monkeypatch)
    monkeypatch.delenv("DISTGRAD_ADVERTISE_ADDR", raising=False)


def test_loopback_address_in_a_job_with_a_remote_store_warns_once(fresh_warning):
    # 192.0.2.1 is an address reserved for documentation: no traffic.
    with pytest.warns(UserWarning) as record:
        assert api._advertised_address(FakeRendezvous("192.0.2.1"), "127.0.0.1") == "127.0.0.1"
    [warning] = record
    assert str(warning.message).startswith(
        "worker 3 will be reached at 127.0.0.1, a loopback address, but the rendezvous store is at "
        "192.0.2.1:29500, on another host: workers elsewhere cannot reach it. Set DISTGRAD_ADVERTISE_ADDR")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api._advertised_address(FakeRendezvous("192.0.2.1"), "127.0.0.1")


@pytest.mark.parametrize("store, listen, advertise, expected", [
    ("127.0.0.1", "127.0.0.1", None, "127.0.0.1"),  # a local job
    ("0.0.0.0", "127.0.0.1", None, "127.0.0.1"),  # the store host is this one
    ("192.0.2.1", "127.0.0.1", "192.0.2.7", "192.0.2.7"),  # set by the user
    ("192.0.2.1", "192.0.2.7", None, "192.0.2.7"),  # the interface towards the store
    ("192.0.2.1", "0.0.0.0", "192.0.2.8", "192.0.2.8"),
], ids=["local", "any-interface-store", "advertised", "listening", "advertised-listening-everywhere"])
def test_no_warning_when_the_address_can_be_right(fresh_warning, monkeypatch, store, listen, advertise, expected):
    if advertise is not None:
        monkeypatch.setenv("DISTGRAD_ADVERTISE_ADDR", advertise)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api._advertised_address(FakeRendezvous(store), listen) == expected


RESTARTED_PROGRAM = textwrap.dedent("""
    import os
    import pathlib
    import sys
    import time

    import distgrad.rpc as rpc

    rank, attempt = int(os.environ["RANK"]), int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    results = pathlib.Path(os.environ["RESULTS"])
    if attempt == 0:
        if rank == 1:
            # Fails once rank 0 is inside init_rpc: it has left keys in the
            # store of torchrun's agent, which the next attempt uses too.
            while not (results / "joining").exists():
                time.sleep(0.05)
            time.sleep(1.0)
            sys.exit("rank 1 fails on the first attempt")
        (results / "joining").touch()
    rpc.init_rpc(f"worker{rank}", timeout=20)
    other = rpc.rpc_sync(f"worker{1 - rank}", rpc.get_worker_info)
    (results / f"worker{rank}").write_text(f"attempt {attempt}: worker{rank} called {other.name}")
    rpc.shutdown()
""")


def test_a_job_restarted_by_torchrun_rejoins(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(RESTARTED_PROGRAM)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "1", "--monitor-interval", "0.2", str(script)]
    [(returncode, output)] = run_programs([command], [{"RESULTS": str(tmp_path)}])
    assert returncode == 0, output
    results = [(tmp_path / f"worker{rank}").read_text() for rank in range(2)]
    assert results == ["attempt 1: worker0 called worker1", "attempt 1: worker1 called worker0"], output
