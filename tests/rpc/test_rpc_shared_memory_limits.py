"""Without shared memory, or with an arena too small for what is sent,
large tensors travel inline and arrive just the same."""

import os

import pytest
import torch

import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.checks import assert_same
from tests.conftest import ROOT


@pytest.fixture(scope="module", params=[0, 2 << 20], ids=["off", "2-MiB-arena"])
def cluster(request):
    setting = {"DISTGRAD_SHM_ARENA_BYTES": str(request.param)}
    os.environ.update(setting)
    try:
        job = Cluster(2, root=ROOT, env=setting).start()
    finally:
        del os.environ["DISTGRAD_SHM_ARENA_BYTES"]
    yield job
    job.stop()


def test_large_tensors_arrive_exactly(cluster):
    one_mib = [torch.full((1 << 18,), float(i)) for i in range(3)]  # 3 x 1 MiB
    four_mib = torch.randn(1 << 20)
    for _ in range(3):
        assert_same(rpc.rpc_sync("worker1", remote_fns.identity, (one_mib,)), one_mib)
        assert_same(rpc.rpc_sync("worker1", remote_fns.identity, (four_mib,)), four_mib)
    assert rpc.debug_info()["num_pending_calls"] == 0
