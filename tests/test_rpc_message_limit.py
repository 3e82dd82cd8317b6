"""DISTGRAD_MAX_MESSAGE_BYTES bounds the messages a worker accepts. A call
whose request or reply would be larger fails alone, with an error saying so,
and the connection stays up."""

import os

import pytest
import torch

import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.conftest import ROOT

LIMIT = 1 << 20


@pytest.fixture(scope="module")
def cluster():
    os.environ["DISTGRAD_MAX_MESSAGE_BYTES"] = str(LIMIT)
    try:
        job = Cluster(2, root=ROOT, env={"DISTGRAD_MAX_MESSAGE_BYTES": str(LIMIT)}).start()
    finally:
        del os.environ["DISTGRAD_MAX_MESSAGE_BYTES"]
    yield job
    job.stop()


def test_request_over_the_limit_fails_before_sending(cluster):
    big = torch.zeros(LIMIT // 4 + 1)  # float32: just over the limit
    with pytest.raises(ValueError, match=f"cannot send to worker 'worker1': message of \\d+ bytes is "
                                         f"larger than the maximum of {LIMIT} \\(DISTGRAD_MAX_MESSAGE_BYTES\\)"):
        rpc.rpc_sync("worker1", torch.neg, (big,))
    small = torch.ones(LIMIT // 8)
    assert torch.equal(rpc.rpc_sync("worker1", torch.neg, (small,)), -small)


def test_reply_over_the_limit_fails_the_call_only(cluster):
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker1", torch.zeros, ((LIMIT // 4 + 1,),))
    message = str(excinfo.value)
    assert f"is larger than the maximum of {LIMIT}" in message
    assert "raised on worker 'worker1'" in message
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"


def test_too_many_tensors_fail_the_call_only(cluster):
    # 100,000 tensors need more descriptor bytes than any receiver accepts.
    many = [torch.zeros(1) for _ in range(100_000)]
    with pytest.raises(ValueError, match="cannot send to worker 'worker1': message of \\d+ tensors has more "
                                         "tensor descriptors than the maximum of 1048576 bytes"):
        rpc.rpc_sync("worker1", remote_fns.identity, (many,))
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
