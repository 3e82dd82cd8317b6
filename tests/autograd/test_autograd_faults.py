"""Distributed backward passes when a worker stops answering or dies: a pass
through a stopped worker fails with DistTimeoutError naming it (instead of
waiting forever), and the contexts a dead worker created are released on
the survivors. Each test runs its own job."""

import os
import signal
import time

import pytest
import torch

import distgrad
import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.autograd_checks import debug_info
from tests.checks import wait_for
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job, to stop or kill a worker.
pytestmark = pytest.mark.no_cluster


def num_contexts(worker):
    return debug_info(worker)["num_autograd_contexts"]


def test_backward_through_a_stopped_worker_times_out_naming_it():
    job = Cluster(3, root=ROOT).start()
    stopped = False
    try:
        t = torch.ones(2, requires_grad=True)
        with dist_autograd.context() as context_id:
            # worker0 -> worker1 -> worker2: the pass goes back the same way.
            loss = rpc.rpc_sync("worker1", remote_fns.chain, (remote_fns.rpc_call, ["worker2"], t)).sum()
            os.kill(job.pid(2), signal.SIGSTOP)
            stopped = True
            start = time.monotonic()
            with pytest.raises(distgrad.DistTimeoutError) as excinfo:
                dist_autograd.backward(context_id, [loss], timeout=1.0)
            assert time.monotonic() - start < 5.0
            assert "RPC to worker 'worker2' (rank 2) timed out after 0.9 seconds" in str(excinfo.value)
            assert "(DistTimeoutError raised on worker 'worker1')" in str(excinfo.value)
        os.kill(job.pid(2), signal.SIGCONT)
        stopped = False
        # Once it answers again, the job works as before.
        with dist_autograd.context() as context_id:
            loss = rpc.rpc_sync("worker1", remote_fns.chain, (remote_fns.rpc_call, ["worker2"], t)).sum()
            dist_autograd.backward(context_id, [loss], timeout=10.0)
            assert dist_autograd.get_gradients(context_id)[t].shape == (2,)
    finally:
        if stopped:
            os.kill(job.pid(2), signal.SIGCONT)
        job.stop()


def test_contexts_of_a_dead_worker_are_released_on_the_survivors():
    job = Cluster(4, root=ROOT).start()
    try:
        # worker1 creates contexts reaching worker2 and, through worker2,
        # worker3 (which never talks to worker1 itself).
        rpc.rpc_sync("worker1", remote_fns.call, ("worker2", remote_fns.whoami))
        for _ in range(3):
            rpc.rpc_sync("worker1", remote_fns.context_left_open, ("worker2", ["worker3"]))
        wait_for(lambda: num_contexts("worker3") == 3, 5, "worker3 to hold worker1's contexts")
        assert num_contexts("worker2") == 3
        job.kill(1)
        wait_for(lambda: (num_contexts("worker2"), num_contexts("worker3")) == (0, 0), 5,
                 "worker2 and worker3 to release the contexts of the dead worker1")
        # Contexts of living workers are kept.
        with dist_autograd.context():
            rpc.rpc_sync("worker2", torch.add, (torch.ones(1, requires_grad=True), 1))
            assert num_contexts("worker2") == 1
    finally:
        job.stop(graceful=False)
