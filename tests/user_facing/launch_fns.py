"""Worker functions for test_examples.py's checks of the example
launcher (tools/examples/launch.py), imported by name in its processes."""

import os
import time

import distgrad.rpc as rpc


def names_seen(rank, config):
    """Rank 0 returns every worker's name as seen through RPC, and config."""
    if rank != 0:
        return None
    return [rpc.rpc_sync(info.name, rpc.get_worker_info).name for info in rpc.get_worker_infos()], config


def fail_on_rank_one(rank, config):
    """Rank 1 raises; the others return."""
    if rank == 1:
        raise ValueError(f"worker {rank} fails on purpose")
    return None


def exit_on_rank_one(rank, config):
    """Rank 1 exits at once with code 3, reporting nothing; the others wait
    (up to 30 s) to be stopped, so that the exit is the first thing the
    launcher sees."""
    if rank == 1:
        os._exit(3)
    time.sleep(30)
