"""Concurrent first calls of TorchScript functions: the workers of this
module's cluster have not imported tests.script_fns yet, so the first call
that names one of its functions makes the worker import (and compile) it
while the other calls are arriving."""

import threading

import torch

import distgrad.rpc as rpc
from tests import script_fns

NUM_THREADS = 8
ROUNDS = 4


def test_concurrent_first_calls_all_succeed(cluster):
    start = threading.Barrier(NUM_THREADS)
    outcomes = [None] * NUM_THREADS

    def body(index):
        t = torch.full((3,), float(index))
        func = script_fns.local_add if index % 2 else "tests.script_fns.local_add"
        start.wait()
        try:
            results = [rpc.rpc_async(dst, func, (t, t)) for _ in range(ROUNDS) for dst in ("worker1", "worker2")]
            outcomes[index] = [f.wait().tolist() for f in results]
        except Exception as error:  # noqa: BLE001 - compared below
            outcomes[index] = repr(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(NUM_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == [[[2.0 * i] * 3] * (2 * ROUNDS) for i in range(NUM_THREADS)]
