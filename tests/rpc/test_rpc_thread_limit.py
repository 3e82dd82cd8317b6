"""A worker that cannot start another thread (its pids cgroup is full) drops
the connection that needed one and carries on: it is not aborted, keeps
serving the connections it has, and accepts new ones once threads are
available again. (As root, RLIMIT_NPROC is not enforced: a pids cgroup
limits threads instead.)"""

import os
import time
import uuid

import pytest
import torch

import distgrad
import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.checks import wait_for
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Its own job, with a worker in a pids cgroup.
pytestmark = pytest.mark.no_cluster

CGROUP_ROOT = "/sys/fs/cgroup/pids"


@pytest.fixture
def full_cgroup():
    """A pids cgroup of its own, or a skip where none can be made."""
    path = os.path.join(CGROUP_ROOT, f"distgrad-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(path)
    except OSError as error:
        pytest.skip(f"cannot create a pids cgroup here ({error})")
    yield path
    with open(os.path.join(path, "pids.max"), "w") as f:
        f.write("max")
    with open(os.path.join(path, "cgroup.procs")) as f:
        pids = f.read().split()
    with open(os.path.join(CGROUP_ROOT, "cgroup.procs"), "w") as f:
        for pid in pids:
            f.write(pid)
            f.flush()
    os.rmdir(path)


def test_a_worker_out_of_threads_drops_the_connection_not_itself(full_cgroup):
    job = Cluster(3, root=ROOT).start()
    try:
        t = torch.ones(2)
        assert torch.equal(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)  # worker0's connection is up
        pid = job.pid(1)
        with open(os.path.join(full_cgroup, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        with open(os.path.join(full_cgroup, "pids.current")) as f:
            current = f.read().strip()
        with open(os.path.join(full_cgroup, "pids.max"), "w") as f:
            f.write(current)  # not one thread more
        # worker2 has never talked to worker1: its connection needs a reader thread there.
        with pytest.raises(distgrad.DistNetworkError):
            rpc.rpc_sync("worker2", remote_fns.call, ("worker1", remote_fns.whoami), timeout=20)
        wait_for(lambda: "cannot start its reader thread" in job.log(1), 10, "worker1 to log the dropped connection")
        assert os.path.exists(f"/proc/{pid}")
        # The connection worker1 had still works.
        assert torch.equal(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)
        with open(os.path.join(full_cgroup, "pids.max"), "w") as f:
            f.write("max")
        assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
    finally:
        job.stop(graceful=False)
