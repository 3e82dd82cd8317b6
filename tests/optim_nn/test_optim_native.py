"""DistributedOptimizer's native path: for torch.optim.SGD and Adagrad
themselves, each owner holds a C++ optimizer (operators/optim) and a step runs
no Python there. Its results equal torch.optim's bit for bit; everything else
falls back to the Python path; native and Python steps on one worker take
turns; the owners' native optimizers go away with the DistributedOptimizer."""

import threading
import time

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from distgrad import _C
from distgrad.optim import DistributedOptimizer
from tests.optim_nn import optim_fns
from tests.autograd_checks import in_fresh_thread
from tests.checks import run_in_threads, wait_for
from tests.optim_nn.test_optim import INPUTS, SplitModel, assert_all_equal, local_layers, train_locally

WORLD_SIZE = 3
WORKERS = ["worker0", "worker1", "worker2"]

NATIVE = [
    pytest.param(torch.optim.SGD, {"lr": 0.05}, id="sgd"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, id="sgd-nesterov"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "weight_decay": 0.1}, id="sgd-weight-decay"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01},
                 id="sgd-dampening"),
    pytest.param(torch.optim.Adagrad, {"lr": 0.1}, id="adagrad"),
    pytest.param(torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1,
                                       "initial_accumulator_value": 0.2, "eps": 1e-8}, id="adagrad-options"),
]

# A parameter and inputs whose SGD steps (lr 0.5) are exact: sums of steps
# do not depend on their order.
START = [1.0, 2.0, -3.0, 4.0]
X = [torch.tensor([1.0, -2.0, 0.5, 4.0]), torch.tensor([3.0, 0.25, -1.0, 2.0])]


def counts(key):
    """{worker: rpc.debug_info()[key] there}."""
    return {w: rpc.rpc_sync(w, rpc.debug_info)[key] for w in WORKERS}


def native_optimizers():
    return counts("num_native_optimizers")


def native_steps():
    return counts("num_native_optimizer_steps")


def added(after, before):
    return {w: after[w] - before[w] for w in WORKERS}


@pytest.mark.parametrize("optimizer_class, kwargs", NATIVE)
def test_native_optimizer_equals_torchs(cluster, optimizer_class, kwargs):
    model = SplitModel()
    optimizers_before, steps_before = native_optimizers(), native_steps()
    optimizer = DistributedOptimizer(optimizer_class, model.parameter_rrefs(), **kwargs)
    assert added(native_optimizers(), optimizers_before) == {w: 1 for w in WORKERS}
    for x in INPUTS:
        with dist_autograd.context() as context_id:
            dist_autograd.backward(context_id, [model.loss(x)])
            optimizer.step(context_id)
    # Three steps on every owner, each a native one.
    assert added(native_steps(), steps_before) == {w: 3 for w in WORKERS}
    trained = model.parameters()
    assert_all_equal(trained, train_locally(optimizer_class, (), kwargs, INPUTS))
    # worker1's spare parameter never has a gradient: untouched, even by weight decay.
    assert torch.equal(trained[2], local_layers()[0].spare.detach())
    assert model.grads() == [None] * 7, "a step left gradients in .grad"


def test_owner_the_forward_did_not_reach_steps_nothing(cluster):
    # The context travels with the step request: worker2 learns it, holds no
    # gradients in it, and keeps its parameters (and releases the context
    # with the others: the leak check).
    model = SplitModel()
    before = model.parameters()
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05, momentum=0.9)
    steps_before = native_steps()
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.first.rpc_sync().forward(INPUTS[0]).sum()])
        optimizer.step(context_id)
    assert added(native_steps(), steps_before) == {w: 1 for w in WORKERS}
    layer = local_layers()[0]
    layer(INPUTS[0]).sum().backward()
    torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9).step()
    assert_all_equal(model.parameters(), [p.detach() for p in layer.parameters()] + before[3:])


@pytest.mark.parametrize("optimizer_class, kwargs", [
    pytest.param(optim_fns.CountingSGD, {"lr": 0.05}, id="subclass"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "maximize": True}, id="maximize"),
    pytest.param(torch.optim.SGD, {"lr": torch.tensor(0.05), "momentum": 0.9}, id="tensor-lr"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "foreach": True}, id="foreach"),
    pytest.param(torch.optim.Adagrad, {"lr": 0.1, "maximize": True}, id="adagrad-maximize"),
    pytest.param(torch.optim.Adam, {"lr": 0.01}, id="adam"),
])
def test_other_optimizers_take_the_python_path(cluster, optimizer_class, kwargs):
    model = SplitModel()
    optimizers_before, steps_before = native_optimizers(), native_steps()
    optimizer = DistributedOptimizer(optimizer_class, model.parameter_rrefs(), **kwargs)
    assert native_optimizers() == optimizers_before
    for x in INPUTS:
        with dist_autograd.context() as context_id:
            dist_autograd.backward(context_id, [model.loss(x)])
            optimizer.step(context_id)
    assert native_steps() == steps_before
    assert_all_equal(model.parameters(), train_locally(optimizer_class, (), kwargs, INPUTS))


@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
def test_an_owner_that_needs_torchs_optimizer_makes_every_owner_step_through_python(cluster):
    # worker1's parameter is listed twice (torch steps it twice; the native
    # SGD does not take duplicates): worker1 holds a torch.optim.SGD and
    # worker2 a native one, which steps when the Python path calls it.
    first = rpc.remote("worker1", optim_fns.make_parameter, (START,))
    second = rpc.remote("worker2", optim_fns.make_parameter, (START,))
    params = rpc.rpc_sync("worker1", optim_fns.rrefs_to, (first, 2)) + [second]
    optimizers_before, steps_before = native_optimizers(), native_steps()
    optimizer = DistributedOptimizer(torch.optim.SGD, params, lr=0.5, momentum=0.9)
    assert added(native_optimizers(), optimizers_before) == {"worker0": 0, "worker1": 0, "worker2": 1}
    for x in X:
        with dist_autograd.context() as context_id:
            loss = (rpc.rpc_sync("worker1", optim_fns.weighted_sum, (first, x))
                    + rpc.rpc_sync("worker2", optim_fns.weighted_sum, (second, x)))
            dist_autograd.backward(context_id, [loss])
            optimizer.step(context_id)
    assert added(native_steps(), steps_before) == {"worker0": 0, "worker1": 0, "worker2": 2}
    local = [torch.tensor(START, requires_grad=True) for _ in range(2)]
    reference = torch.optim.SGD([local[0], local[0], local[1]], lr=0.5, momentum=0.9)
    for x in X:
        reference.zero_grad()
        ((local[0] * x).sum() + (local[1] * x).sum()).backward()
        reference.step()
    assert torch.equal(rpc.rpc_sync("worker1", optim_fns.value_of, (first,)), local[0].detach())
    assert torch.equal(rpc.rpc_sync("worker2", optim_fns.value_of, (second,)), local[1].detach())


def _remote_parameter(values):
    """An RRef to a parameter worker1 holds."""
    return rpc.remote("worker1", optim_fns.make_parameter, (values,))


def _train_step(optimizer, parameter, x, backward_done=None):
    """One step of optimizer with the gradient of (parameter * x).sum() (x)."""
    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync("worker1", optim_fns.weighted_sum, (parameter, x))
        dist_autograd.backward(context_id, [loss])
        if backward_done is not None:
            backward_done.wait()
        optimizer.step(context_id)


def test_concurrent_native_steps_both_apply(cluster):
    parameter = _remote_parameter(START)
    optimizers = [DistributedOptimizer(torch.optim.SGD, [parameter], lr=0.5) for _ in range(2)]
    steps_before = native_steps()["worker1"]
    backward_done = threading.Barrier(2, timeout=30.0)
    run_in_threads(lambda i: _train_step(optimizers[i], parameter, X[i], backward_done), 2)
    assert native_steps()["worker1"] == steps_before + 2
    expected = torch.tensor(START) - 0.5 * X[0] - 0.5 * X[1]
    assert torch.equal(rpc.rpc_sync("worker1", optim_fns.value_of, (parameter,)), expected)


def test_native_and_python_steps_take_turns(cluster):
    # A Python step holds worker1's step lock for 0.3 s; a native step over
    # the same parameter sent meanwhile runs only after it.
    rpc.rpc_sync("worker1", optim_fns.step_log)  # starts a new log
    parameter = _remote_parameter(START)
    slow = DistributedOptimizer(optim_fns.SlowSGD, [parameter], lr=0.5)
    native = DistributedOptimizer(torch.optim.SGD, [parameter], lr=0.5)
    steps_before = native_steps()["worker1"]
    python_step = threading.Thread(target=_train_step, args=(slow, parameter, X[0]))
    python_step.start()
    try:
        wait_for(lambda: rpc.rpc_sync("worker1", optim_fns.steps_under_way) == 1, 10.0, "the Python step")
        _train_step(native, parameter, X[1])
    finally:
        python_step.join(30.0)
    log = rpc.rpc_sync("worker1", optim_fns.step_log)
    assert log["steps"] == 1 and log["grads"] == [(steps_before, steps_before)], log
    assert native_steps()["worker1"] == steps_before + 1
    expected = torch.tensor(START) - 0.5 * X[0] - 0.5 * X[1]
    assert torch.equal(rpc.rpc_sync("worker1", optim_fns.value_of, (parameter,)), expected)


def test_owner_without_the_context_names_itself_and_the_id(cluster):
    # Stepped from a thread where the context is not current, the request
    # does not carry it: worker2, which the forward did not reach, fails;
    # the others step.
    model = SplitModel()
    before = model.parameters()
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05)
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.first.rpc_sync().forward(INPUTS[0]).sum()])
        with pytest.raises(ValueError) as excinfo:
            in_fresh_thread(optimizer.step, context_id)
    message = excinfo.value.args[0]
    assert message.startswith(f"Error running optimizer on worker2: distributed autograd context {context_id} "
                              "is not known on this worker"), message
    assert message.endswith("(ValueError raised on worker 'worker2')"), message
    after = model.parameters()
    assert not torch.equal(after[0], before[0])  # worker1 stepped
    assert_all_equal(after[3:], before[3:])  # worker2 could not, worker0 had no gradients


def test_unknown_context_here_fails_before_any_owner_steps(cluster):
    model = SplitModel()
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05)
    steps_before = native_steps()
    with pytest.raises(ValueError, match="^distributed autograd context 12345 is not known on this worker"):
        optimizer.step(12345)
    assert native_steps() == steps_before


def test_optimizers_go_away_with_the_distributed_optimizer(cluster):
    model = SplitModel()
    optimizers_before = native_optimizers()
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05)
    targets = optimizer._native_targets
    assert added(native_optimizers(), optimizers_before) == {w: 1 for w in WORKERS}
    del optimizer
    start = time.monotonic()
    wait_for(lambda: native_optimizers() == optimizers_before, 1.0, "the native optimizers to be freed")
    assert time.monotonic() - start < 1.0
    # A step that names a freed optimizer fails naming the owner and the id
    # (the first owner in params order: worker1).
    worker1_id = targets[0][1]
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.loss(INPUTS[0])])
        with pytest.raises(ValueError) as excinfo:
            _C._native_optimizer_step(targets, context_id)
    assert excinfo.value.args[0].startswith(
        f"Error running optimizer on worker1: worker 'worker1' holds no optimizer {worker1_id} "), \
        excinfo.value.args[0]
