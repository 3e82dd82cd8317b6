"""RRefs across a graceful shutdown: references held anywhere are released
before the job ends (owners are left with nothing), and the RRef objects
that outlive the job fail clearly instead of reaching a later job."""

import gc

import pytest
import torch

import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import rref_fns
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job, to shut it down.
pytestmark = pytest.mark.no_cluster


def test_graceful_shutdown_releases_every_reference():
    job = Cluster(3, root=ROOT).start()
    try:
        theirs = rpc.remote("worker1", rref_fns.make_tensor, (1, 2))
        mine = rpc.RRef(torch.ones(2))
        # worker2 holds references to values of worker1 and of worker0, and
        # worker1 one to a value of worker2.
        rpc.rpc_sync("worker2", rref_fns.keep, (theirs,))
        rpc.rpc_sync("worker2", rref_fns.keep, (mine,))
        rpc.rpc_sync("worker1", rref_fns.keep, (rpc.remote("worker2", rref_fns.make_tensor, (2, 2)),))
        # Nothing has been released yet: shutdown must do it. The job ends
        # within its timeouts and every worker exits with code 0.
    finally:
        job.stop()
    assert [job.returncode(r) for r in (1, 2)] == [0, 0]
    # The references that outlive the job fail clearly.
    with pytest.raises(RuntimeError, match="distgrad RPC is not initialized in this process"):
        theirs.to_here()
    assert mine.local_value().tolist() == [1.0, 1.0]


def test_an_rref_of_a_finished_job_does_not_reach_the_next_one():
    job = Cluster(2, root=ROOT).start()
    try:
        stale = rpc.remote("worker1", rref_fns.make_tensor, (3, 1))
        stale.to_here()
    finally:
        job.stop()
    job = Cluster(2, root=ROOT).start()
    try:
        with pytest.raises(RuntimeError, match="belongs to an RPC job that has shut down"):
            stale.to_here()
        del stale
        gc.collect()
        assert rpc.rpc_sync("worker1", rref_fns.identity, (5,)) == 5
        assert rpc.debug_info()["num_user_rrefs"] == 0
    finally:
        job.stop()
