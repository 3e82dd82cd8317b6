"""A peer that is slow at first contact (stopped, overloaded) fails that
call with DistTimeoutError and stays a peer: once it answers again, calls to
it work. Only a peer that refuses connections or fails the handshake is
lost."""

import os
import signal
import time

import pytest

import distgrad
import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.checks import job_key, wait_for
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). It runs its own job (`job` below).
pytestmark = pytest.mark.no_cluster

HANDSHAKE_TIMEOUT = "1"


# Not the shared `cluster` fixture: its per-test checks would make the first
# contact with every worker before the test does.
@pytest.fixture(scope="module")
def job():
    os.environ["DISTGRAD_HANDSHAKE_TIMEOUT"] = HANDSHAKE_TIMEOUT
    try:
        cluster = Cluster(3, root=ROOT, env={"DISTGRAD_HANDSHAKE_TIMEOUT": HANDSHAKE_TIMEOUT}).start()
    finally:
        del os.environ["DISTGRAD_HANDSHAKE_TIMEOUT"]
    yield cluster
    cluster.stop()


def test_slow_first_contact_is_a_timeout_not_a_loss(job):
    os.kill(job.pid(2), signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(distgrad.DistTimeoutError, match="handshake with worker 'worker2' \\(rank 2\\) at "
                                                            "127.0.0.1:\\d+ got no answer within 1 seconds"):
            rpc.rpc_sync("worker2", remote_fns.whoami, timeout=10)
        assert time.monotonic() - start < 5
    finally:
        os.kill(job.pid(2), signal.SIGCONT)
    assert rpc.rpc_sync("worker2", remote_fns.whoami) == "worker2"
    assert rpc.debug_info()["num_pending_calls"] == 0


def test_a_connection_its_connector_gave_up_mid_handshake_loses_nobody(job):
    # As when the acceptor was too slow for the connector's deadline: the
    # connector (here a raw socket holding the key, claiming worker0) gets
    # the accept but closes before its arena-ready frame. worker1 has no
    # other connection from worker0, and must not take worker0 for lost.
    from tests.rpc.test_rpc_handshake import ACCEPT, PROOF, challenged, connect_to, frame, proof_mac, proof_meta, read_frame

    key = job_key()
    with connect_to(1) as sock:
        nonce, their_nonce = challenged(sock, rank=0)
        sock.sendall(frame(PROOF, 0, proof_meta(proof_mac(key, 0, 1, nonce, their_nonce))))
        assert read_frame(sock)[0] == ACCEPT
    wait_for(lambda: "it ended its handshake" in job.log(1), 10, "worker1 to drop that connection")
    assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
