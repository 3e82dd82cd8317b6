"""Naming workers: by name, by rank or by WorkerInfo; the WorkerInfo
queries; unknown workers."""

import pytest
import torch

import distgrad.rpc as rpc
from distgrad.rpc import WorkerInfo
from tests import remote_fns

DESTINATION_FORMS = {
    "name": lambda rank: f"worker{rank}",
    "rank": lambda rank: rank,
    "worker-info": lambda rank: WorkerInfo(f"worker{rank}", rank),
    "get-worker-info": lambda rank: rpc.get_worker_info(f"worker{rank}"),
}


@pytest.mark.parametrize("rank", [0, 1, 2])
@pytest.mark.parametrize("form", DESTINATION_FORMS)
def test_destination_forms(cluster, form, rank):
    to = DESTINATION_FORMS[form](rank)
    assert rpc.rpc_sync(to, remote_fns.whoami) == f"worker{rank}"
    assert rpc.rpc_async(to, remote_fns.whoami).wait() == f"worker{rank}"
    assert torch.equal(rpc.rpc_sync(to, torch.add, (torch.ones(2), rank)), torch.full((2,), 1.0 + rank))


def test_get_worker_info(cluster):
    assert rpc.get_worker_info() == WorkerInfo("worker0", 0)
    assert rpc.get_worker_info("worker2") == WorkerInfo("worker2", 2)
    assert rpc.get_worker_info("worker1").name == "worker1"
    assert rpc.get_worker_info("worker1").id == 1


def test_get_worker_infos(cluster):
    infos = rpc.get_worker_infos()
    assert infos == [WorkerInfo("worker0", 0), WorkerInfo("worker1", 1), WorkerInfo("worker2", 2)]
    assert all(isinstance(info, WorkerInfo) for info in infos)


def test_worker_info_on_other_workers(cluster):
    assert rpc.rpc_sync("worker2", rpc.get_worker_info) == WorkerInfo("worker2", 2)
    assert rpc.rpc_sync("worker1", rpc.get_worker_infos) == rpc.get_worker_infos()


def test_get_worker_info_unknown_name(cluster):
    with pytest.raises(ValueError) as excinfo:
        rpc.get_worker_info("worker9")
    assert str(excinfo.value) == "unknown worker 'worker9' (the workers are: worker0, worker1, worker2)"


@pytest.mark.parametrize("call", [rpc.rpc_sync, rpc.rpc_async])
def test_unknown_worker_name(cluster, call):
    with pytest.raises(ValueError) as excinfo:
        call("nobody", torch.add, (torch.ones(1), 1))
    assert str(excinfo.value) == "unknown worker 'nobody' (the workers are: worker0, worker1, worker2)"


@pytest.mark.parametrize("call", [rpc.rpc_sync, rpc.rpc_async])
@pytest.mark.parametrize("to", [3, -1, WorkerInfo("ghost", 7)], ids=["rank-3", "rank-minus-1", "worker-info-rank-7"])
def test_unknown_worker_rank(cluster, call, to):
    rank = to.id if isinstance(to, WorkerInfo) else to
    with pytest.raises(ValueError) as excinfo:
        call(to, remote_fns.whoami)
    assert str(excinfo.value) == f"unknown worker rank {rank} (ranks are 0 to 2)"


@pytest.mark.parametrize("to", [1.0, None, ("worker1",)], ids=["float", "none", "tuple"])
def test_destination_of_wrong_type(cluster, to):
    with pytest.raises(TypeError, match="a destination is a worker name, a rank or a WorkerInfo"):
        rpc.rpc_sync(to, remote_fns.whoami)
