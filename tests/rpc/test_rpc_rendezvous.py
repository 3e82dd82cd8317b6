"""Where the workers of a job meet: a file:// store, the environment torchrun
sets, and a store torch.distributed already serves (init_process_group on
the same MASTER_ADDR/MASTER_PORT). Each test runs its own job; the jobs of
whole programs run as separate processes, bounded in time."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch.distributed as c10d

import distgrad.rpc as rpc
from distgrad._testing import Cluster
from tests import remote_fns
from tests.checks import free_port
from tests.conftest import ROOT

# No cluster for this module (tests/cluster_autouse.py). Each test runs its own job.
pytestmark = pytest.mark.no_cluster

# Bounds each program run here, start to exit.
PROGRAM_TIMEOUT = 90.0


def run_programs(commands, envs):
    """Runs each command with its environment, all at once, and returns their
    (exit code, output). Kills whatever is left after PROGRAM_TIMEOUT,
    including the processes a command started."""
    procs = []
    try:
        for command, env in zip(commands, envs):
            env = dict(os.environ, **env)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
            procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, start_new_session=True))
        deadline = time.monotonic() + PROGRAM_TIMEOUT
        outputs = [p.communicate(timeout=max(0.0, deadline - time.monotonic()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return [(p.returncode, output) for p, output in zip(procs, outputs)]


def test_file_init_method(tmp_path):
    store = tmp_path / "store"
    job = Cluster(2, root=ROOT, init_method=f"file://{store}").start()
    try:
        assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"
        assert rpc.rpc_sync("worker1", remote_fns.call, ("worker0", remote_fns.whoami)) == "worker0"
    finally:
        job.stop()
    assert job.returncode(1) == 0
    # The last worker to close the store removes its file.
    assert not store.exists()


def test_rank_and_world_size_from_the_environment(monkeypatch):
    for variable, value in [("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                            ("MASTER_PORT", str(free_port()))]:
        monkeypatch.setenv(variable, value)
    rpc.init_rpc("solo")
    try:
        assert rpc.get_worker_infos() == [rpc.WorkerInfo("solo", 0)]
        assert rpc.get_worker_info(worker_name="solo") == rpc.WorkerInfo("solo", 0)
        assert rpc.rpc_sync("solo", remote_fns.whoami) == "solo"
    finally:
        rpc.shutdown()


def test_jobs_share_a_store_served_in_this_process():
    # Rank 0 joins a TCPStore server that this process already runs at the
    # address (as init_process_group leaves one), instead of hosting another,
    # and leaves the keys of others alone; a second job works there too.
    port = free_port()
    server = c10d.TCPStore("127.0.0.1", port, 1, is_master=True, wait_for_workers=False, multi_tenant=True)
    server.set("theirs", "kept")
    for _ in range(2):
        rpc.init_rpc("solo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
        try:
            assert rpc.rpc_sync("solo", remote_fns.whoami) == "solo"
        finally:
            rpc.shutdown()
    assert server.get("theirs") == b"kept"


# A program written for torch.distributed.rpc (batch/parameter_server.py has
# this shape): a process group first, then RPC at the same address, twice.
AFTER_PROCESS_GROUP = textwrap.dedent("""
    import os
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    import distgrad.rpc as rpc

    rank = int(os.environ["RANK"])
    dist.init_process_group(backend="gloo", timeout=timedelta(seconds=30))
    for job in (1, 2):
        rpc.init_rpc(f"worker{rank}", timeout=30)
        result = rpc.rpc_sync(f"worker{1 - rank}", torch.add, (torch.ones(2), rank))
        print(f"job {job}:", result.tolist(), flush=True)
        rpc.shutdown()
    total = torch.tensor([rank + 1.0])
    dist.all_reduce(total)
    print("all_reduce:", total.item(), flush=True)
    dist.destroy_process_group()
""")


def test_init_rpc_after_init_process_group_on_the_same_address():
    address = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    results = run_programs([[sys.executable, "-c", AFTER_PROCESS_GROUP]] * 2,
                           [dict(address, RANK=str(rank)) for rank in range(2)])
    for rank, (returncode, output) in enumerate(results):
        assert returncode == 0, output
        lines = [line for line in output.splitlines() if line.startswith(("job", "all_reduce"))]
        assert lines == [f"job 1: {[1.0 + rank] * 2}", f"job 2: {[1.0 + rank] * 2}", "all_reduce: 3.0"], output


TORCHRUN_PROGRAM = textwrap.dedent("""
    import os
    import pathlib

    import distgrad.rpc as rpc

    rpc.init_rpc(f"worker{os.environ['RANK']}", timeout=30)
    me = rpc.get_worker_info()
    other = rpc.rpc_sync(f"worker{1 - me.id}", rpc.get_worker_info)
    result = f"{me.name} of {len(rpc.get_worker_infos())} called {other.name}"
    pathlib.Path(os.environ["RESULTS"], me.name).write_text(result)
    rpc.shutdown()
""")


def test_torchrun(tmp_path):
    # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, where its
    # agent hosts the store.
    script = tmp_path / "program.py"
    script.write_text(TORCHRUN_PROGRAM)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    [(returncode, output)] = run_programs([command], [{"RESULTS": str(tmp_path)}])
    assert returncode == 0, output
    results = [(tmp_path / f"worker{rank}").read_text() for rank in range(2)]
    assert results == ["worker0 of 2 called worker1", "worker1 of 2 called worker0"], output
    assert "failed to bind" not in output
