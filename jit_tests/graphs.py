"""Graph assertions shared by the TorchScript tests."""

import torch
from torch.testing import FileCheck

# The profiling executor specializes and optimizes a function after its first
# runs; an op wrongly treated as pure would be folded or dropped from then on.
RUNS = 3


def check_graph(graph, ops):
    """Each op (e.g. "dist_rpc::rpc_async") appears in graph."""
    for op in ops:
        FileCheck().check(op).run(str(graph))


def run_checking_graph(fn, args, ops, runs=RUNS):
    """Calls fn(*args) `runs` times; after every call, the graph TorchScript
    actually executed on this thread still contains each op. Returns the
    results of all the calls."""
    results = []
    for _ in range(runs):
        results.append(fn(*args))
        check_graph(torch.jit.last_executed_optimized_graph(), ops)
    return results
