"""A worker's requests run with the intra-op thread count the worker chose
(torch.set_num_threads before init_rpc), not OpenMP's default: OpenMP keeps
the count per thread, and the runtime's threads take torch's setting when
they start, as torch's own threads do."""

import torch

import distgrad.rpc as rpc
from tests.rpc import intra_op_fns

CLUSTER_OPTIONS = {"imports": ["tests.rpc.intra_op_fns"]}


def test_a_request_runs_with_the_workers_intra_op_thread_count(cluster):
    for worker in ("worker1", "worker2"):
        # Several at once: each runs on its own pool thread.
        futures = [rpc.rpc_async(worker, intra_op_fns.counts) for _ in range(8)]
        for chosen, used in torch.futures.wait_all(futures):
            assert used == chosen, f"{worker}: a pool thread ran with {used} threads, not {chosen}"
