"""With a torch profiler recording, distgrad's calls appear as named spans."""

import torch
from torch.profiler import profile, record_function

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns, rref_fns, script_fns
from tests.checks import wait_for

WORLD_SIZE = 2
T = torch.ones(2)


def event_names(prof):
    return [e.name for e in prof.events()]


def test_calls_are_profiler_spans(cluster):
    with profile() as prof:
        with record_function("outer"):
            rpc.rpc_sync("worker1", torch.add, (T, T))
            rpc.rpc_async("worker1", remote_fns.add, (T, T)).wait()
            rref = rpc.remote("worker1", script_fns.local_add, (T, T))
            rref.to_here()
    names = event_names(prof)
    for expected in ("rpc_sync#aten::add(worker0 -> worker1)",
                     "rpc_async#add(worker0 -> worker1)",
                     "rpc_remote#__torch__.tests.script_fns.local_add(worker0 -> worker1)",
                     "rref_to_here#(worker0 -> worker1)"):
        assert expected in names, (expected, names)
    del rref


def test_async_span_ends_when_the_call_does(cluster):
    with profile() as prof:
        future = rpc.rpc_async("worker1", rref_fns.sleep_then, (0.2, 1))
        assert future.wait() == 1
    [event] = [e for e in prof.events() if e.name == "rpc_async#sleep_then(worker0 -> worker1)"]
    assert event.cpu_time_total >= 150_000  # microseconds


def test_distributed_backward_is_a_span(cluster):
    t = torch.ones(2, requires_grad=True)
    with profile() as prof:
        with dist_autograd.context() as context_id:
            loss = rpc.rpc_sync("worker1", torch.mul, (t, 2)).sum()
            dist_autograd.backward(context_id, [loss])
    assert f"dist_autograd.backward#context {context_id}" in event_names(prof)


def test_no_span_without_a_profiler(cluster):
    assert not torch.autograd._profiler_enabled()
    assert rpc.rpc_sync("worker1", torch.add, (T, T)).tolist() == [2.0, 2.0]


def test_served_requests_appear_in_the_callees_trace(cluster, tmp_path):
    ready = tmp_path / "profiling"
    spans = rpc.rpc_async("worker1", remote_fns.served_spans, (str(ready), 1.0))
    wait_for(ready.exists, 30, "worker1 to start its profiler")
    t = torch.ones(2)
    rpc.rpc_sync("worker1", torch.add, (t, t))
    rpc.rpc_sync("worker1", remote_fns.add, (t, t))
    rref = rpc.remote("worker1", script_fns.local_add, (t, t))
    rref.to_here()
    assert spans.wait() == [
        "rpc#aten::add.Tensor(worker0 -> worker1)",
        "rpc#python(worker0 -> worker1)",
        "rpc#rref.to_here(worker0 -> worker1)",
        "rpc_remote#__torch__.tests.script_fns.local_add(worker0 -> worker1)",
    ]
    del rref
