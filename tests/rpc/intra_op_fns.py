"""Imported by the workers of tests/rpc/test_rpc_intra_op_threads.py before
they join the job: sets torch's intra-op thread count to one that differs
from OpenMP's default on this machine (one per core, or OMP_NUM_THREADS),
as a training script does with torch.set_num_threads before init_rpc."""

import ctypes

import torch

CHOSEN = 1 if torch.get_num_threads() > 1 else 2
torch.set_num_threads(CHOSEN)


def _openmp():
    """The OpenMP runtime torch loaded (torch/lib/libgomp.so.1 in its wheels)."""
    with open("/proc/self/maps") as maps:
        path = next(line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line)
    return ctypes.CDLL(path)


def counts():
    """(what this worker chose, the size of the OpenMP team a parallel
    region of the calling thread would start). Asked of OpenMP itself:
    torch.get_num_threads() would first give the thread torch's setting
    (torch does so lazily where it parallelizes, but MKL's matrix products
    do not go through there)."""
    return CHOSEN, _openmp().omp_get_max_threads()
