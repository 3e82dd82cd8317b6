"""DISTGRAD_MAX_MESSAGE_BYTES bounds the messages a worker accepts; workers
tell each other their limits when they connect, and a sender checks what it
sends against the receiver's. A call whose request or reply would be larger
fails alone, with an error saying so, and the connection stays up. Here
worker0 (this process) accepts four times what worker1 does."""

import os

import pytest
import torch

import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.conftest import ROOT

LIMIT = 1 << 20  # worker1's
LIMIT_HERE = 4 * LIMIT


@pytest.fixture(scope="module")
def cluster():
    os.environ["DISTGRAD_MAX_MESSAGE_BYTES"] = str(LIMIT_HERE)
    try:
        job = Cluster(2, root=ROOT, env={"DISTGRAD_MAX_MESSAGE_BYTES": str(LIMIT)}).start()
    finally:
        del os.environ["DISTGRAD_MAX_MESSAGE_BYTES"]
    yield job
    job.stop()


def test_request_over_the_limit_fails_before_sending(cluster):
    big = torch.zeros(LIMIT // 4 + 1)  # float32: just over the limit
    with pytest.raises(ValueError, match=f"cannot send to worker 'worker1': message of \\d+ bytes is larger "
                                         f"than the maximum it accepts, {LIMIT} \\(its DISTGRAD_MAX_MESSAGE_BYTES\\)"):
        rpc.rpc_sync("worker1", torch.neg, (big,))
    small = torch.ones(LIMIT // 8)
    assert torch.equal(rpc.rpc_sync("worker1", torch.neg, (small,)), -small)


def test_reply_over_the_callers_limit_fails_the_call_only(cluster):
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker1", torch.zeros, ((LIMIT_HERE // 4 + 1,),))
    message = str(excinfo.value)
    assert ("cannot send the result to worker 'worker0': message of 4194362 bytes is larger than the maximum "
            f"it accepts, {LIMIT_HERE} (its DISTGRAD_MAX_MESSAGE_BYTES)") in message
    assert "raised on worker 'worker1'" in message
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"


def test_a_reply_over_the_senders_own_limit_travels(cluster):
    # worker1 accepts at most LIMIT bytes, but worker0 accepts this reply.
    assert torch.equal(rpc.rpc_sync("worker1", torch.ones, ((2 * LIMIT // 4,),)), torch.ones(2 * LIMIT // 4))


def test_a_worker_checks_what_it_sends_against_its_peers_limit(cluster):
    # From worker1 to worker0: over worker1's own limit, within worker0's.
    numel = 2 * LIMIT // 4
    assert rpc.rpc_sync("worker1", remote_fns.sum_of_ones_on, ("worker0", numel)) == numel
    # Over worker0's limit: fails on worker1 before sending.
    with pytest.raises(ValueError, match=f"cannot send to worker 'worker0': message of \\d+ bytes is larger than "
                                         f"the maximum it accepts, {LIMIT_HERE}"):
        rpc.rpc_sync("worker1", remote_fns.sum_of_ones_on, ("worker0", LIMIT_HERE // 4 + 1))
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
