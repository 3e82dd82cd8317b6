"""DistributedOptimizer: training a model split across three workers equals
training it locally; steps use the gradients of their context only, run on
all owners at once and one at a time on each owner; errors name the owner."""

import threading

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from distgrad.optim import DistributedOptimizer
from tests.optim_nn import optim_fns
from tests.autograd_checks import in_fresh_thread
from tests.checks import run_in_threads, wait_for

WORLD_SIZE = 3

_generator = torch.Generator().manual_seed(0)
INPUTS = [torch.randn(2, 4, generator=_generator) for _ in range(3)]

# (optimizer class, positional args, keyword args): every optimizer below
# updates each parameter from its own gradient and state only, so one
# optimizer per owner computes what one local optimizer over all computes.
OPTIMIZERS = [
    pytest.param(torch.optim.SGD, (0.05,), {}, id="sgd-positional-lr"),
    pytest.param(torch.optim.SGD, (), {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True},
                 id="sgd-nesterov"),
    pytest.param(torch.optim.SGD, (), {"lr": 0.05, "momentum": 1.0, "dampening": 0.5, "weight_decay": 1.0},
                 id="sgd-momentum-dampening"),
    pytest.param(torch.optim.Adam, (), {"lr": 0.01, "amsgrad": True}, id="adam-amsgrad"),
    pytest.param(torch.optim.AdamW, (), {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}, id="adamw-amsgrad"),
    pytest.param(torch.optim.Adagrad, (), {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}, id="adagrad"),
    pytest.param(torch.optim.Adadelta, (), {"lr": 0.5}, id="adadelta"),
    pytest.param(torch.optim.RMSprop, (), {"lr": 0.01, "momentum": 0.5, "centered": True}, id="rmsprop"),
    pytest.param(torch.optim.Rprop, (), {"lr": 0.01}, id="rprop"),
    pytest.param(torch.optim.Adamax, (), {"lr": 0.02}, id="adamax"),
]


def local_layers():
    """The model: Affine(4, 3) with a parameter it never uses, Affine(3, 2),
    Affine(2, 1), each followed by tanh but the last."""
    return [optim_fns.Affine(4, 3, seed=1, spare=True), optim_fns.Affine(3, 2, seed=2), optim_fns.Affine(2, 1, seed=3)]


def local_loss(layers, x):
    first, second, last = layers
    return last(second(first(x).tanh()).tanh()).pow(2).sum()


class SplitModel:
    """The same model with its first layer on worker1, its second on worker2
    and its last here, called through RRef proxies."""

    def __init__(self):
        self.first = rpc.remote("worker1", optim_fns.Affine, (4, 3), {"seed": 1, "spare": True})
        self.second = rpc.remote("worker2", optim_fns.Affine, (3, 2), {"seed": 2})
        self.last = optim_fns.Affine(2, 1, seed=3)

    def loss(self, x):
        h = self.first.rpc_sync().forward(x).tanh()
        h = self.second.rpc_sync().forward(h).tanh()
        return self.last(h).pow(2).sum()

    def parameter_rrefs(self):
        return (rpc.rpc_sync("worker1", optim_fns.parameter_rrefs, (self.first,))
                + rpc.rpc_sync("worker2", optim_fns.parameter_rrefs, (self.second,))
                + [rpc.RRef(p) for p in self.last.parameters()])

    def parameters(self):
        """Copies of all parameters, in the order of parameter_rrefs()."""
        return (rpc.rpc_sync("worker1", optim_fns.parameters_of, (self.first,))
                + rpc.rpc_sync("worker2", optim_fns.parameters_of, (self.second,))
                + [p.detach().clone() for p in self.last.parameters()])

    def grads(self):
        """.grad of all parameters, in the order of parameter_rrefs()."""
        return (rpc.rpc_sync("worker1", optim_fns.grads_of, (self.first,))
                + rpc.rpc_sync("worker2", optim_fns.grads_of, (self.second,))
                + [p.grad for p in self.last.parameters()])


def train_locally(optimizer_class, args, kwargs, inputs):
    """The parameters after one local optimizer step per input (from .grad)."""
    layers = local_layers()
    params = [p for layer in layers for p in layer.parameters()]
    optimizer = optimizer_class(params, *args, **kwargs)
    for x in inputs:
        optimizer.zero_grad()
        local_loss(layers, x).backward()
        optimizer.step()
    return [p.detach().clone() for p in params]


def assert_all_equal(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert torch.equal(a, e), f"parameter {i}: {a} != {e}"


@pytest.mark.parametrize("optimizer_class, args, kwargs", OPTIMIZERS)
def test_training_equals_local_training(cluster, optimizer_class, args, kwargs):
    # Each parameter's gradient is computed by the same operations on the
    # same values as in the local run, and each optimizer runs the same
    # code on it: the results are equal bit for bit.
    model = SplitModel()
    optimizer = DistributedOptimizer(optimizer_class, model.parameter_rrefs(), *args, **kwargs)
    assert [r.owner_name() for r in optimizer.remote_optimizers] == ["worker1", "worker2", "worker0"]
    for x in INPUTS:
        with dist_autograd.context() as context_id:
            dist_autograd.backward(context_id, [model.loss(x)])
            optimizer.step(context_id)
    trained = model.parameters()
    assert_all_equal(trained, train_locally(optimizer_class, args, kwargs, INPUTS))
    # The parameter without gradients (worker1's spare) was left alone.
    assert torch.equal(trained[2], local_layers()[0].spare.detach())
    assert model.grads() == [None] * 7, "a step left gradients in .grad"


def test_grad_is_neither_used_nor_changed(cluster):
    model = SplitModel()
    rpc.rpc_sync("worker1", optim_fns.set_grads, (model.first, 7.0))
    for p in model.last.parameters():
        p.grad = torch.full_like(p, 7.0)
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05, momentum=0.9)
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.loss(INPUTS[0])])
        optimizer.step(context_id)
    assert_all_equal(model.parameters(), train_locally(torch.optim.SGD, (), {"lr": 0.05, "momentum": 0.9}, INPUTS[:1]))
    grads = model.grads()
    assert [g is None for g in grads] == [False] * 3 + [True] * 2 + [False] * 2
    assert all(torch.equal(g, torch.full_like(g, 7.0)) for g in grads if g is not None)


def test_owners_step_at_the_same_time(cluster, tmp_path):
    # Each owner's step waits until steps have started on all three owners.
    model = SplitModel()
    optimizer = DistributedOptimizer(optim_fns.MeetingSGD, model.parameter_rrefs(), lr=0.05,
                                     directory=str(tmp_path), parties=["worker0", "worker1", "worker2"])
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.loss(INPUTS[0])])
        optimizer.step(context_id)
    assert_all_equal(model.parameters(), train_locally(torch.optim.SGD, (), {"lr": 0.05}, INPUTS[:1]))


def test_concurrent_steps_on_one_owner_take_turns(cluster):
    # Two trainers, each with its own context and its own optimizer over the
    # same parameters, step together: the owner runs one step at a time, each
    # with its own context's gradients.
    rpc.rpc_sync("worker1", optim_fns.step_log)  # starts a new log
    module = rpc.remote("worker1", optim_fns.Affine, (4, 3), {"seed": 1})
    params = rpc.rpc_sync("worker1", optim_fns.parameter_rrefs, (module,))
    optimizers = [DistributedOptimizer(optim_fns.OverlapCheckingSGD, params, lr=0.1, parties=2) for _ in range(2)]
    backward_done = threading.Barrier(2, timeout=30.0)

    def trainer(index):
        with dist_autograd.context() as context_id:
            loss = module.rpc_sync().forward(INPUTS[index]).pow(2).sum()
            dist_autograd.backward(context_id, [loss])
            backward_done.wait()
            optimizers[index].step(context_id)

    run_in_threads(trainer, 2)
    log = rpc.rpc_sync("worker1", optim_fns.step_log)
    assert (log["steps"], log["max_active"]) == (2, 1)
    expected = []
    for x in INPUTS[:2]:
        layer = optim_fns.Affine(4, 3, seed=1)
        layer(x).pow(2).sum().backward()
        expected.append([layer.weight.grad, layer.bias.grad])
    assert any(all(torch.equal(a, e) for a, e in zip(log["grads"][0] + log["grads"][1], first + second))
               for first, second in (expected, expected[::-1])), "a step did not see its own context's gradients"
    # One SGD step after the other, in the order they ran.
    initial = [p.detach() for p in optim_fns.Affine(4, 3, seed=1).parameters()]
    after = [p.add(g1, alpha=-0.1).add(g2, alpha=-0.1) for p, g1, g2 in zip(initial, *log["grads"])]
    assert_all_equal(rpc.rpc_sync("worker1", optim_fns.parameters_of, (module,)), after)


def test_step_error_names_the_first_failing_owner(cluster):
    model = SplitModel()
    before = model.parameters()
    for refuse, failing in [(("worker2",), "worker2"), (("worker2", "worker1"), "worker1")]:
        optimizer = DistributedOptimizer(optim_fns.RefusingSGD, model.parameter_rrefs(), lr=0.05, refuse_step=refuse)
        with dist_autograd.context() as context_id:
            dist_autograd.backward(context_id, [model.loss(INPUTS[0])])
            with pytest.raises(ValueError, match=f"^Error running optimizer on {failing}: no step on {failing}"):
                optimizer.step(context_id)
    # The owners that did not refuse stepped: worker0 twice, worker1 once.
    after = model.parameters()
    assert not torch.equal(after[0], before[0]) and not torch.equal(after[5], before[5])
    assert torch.equal(after[3], before[3])


def test_the_callers_own_step_runs_here_and_its_error_is_named_like_the_others(cluster):
    # worker0 owns some parameters: its step runs in the caller, not through
    # a call to itself, and fails the same way.
    model = SplitModel()
    optimizer = DistributedOptimizer(optim_fns.RefusingSGD, model.parameter_rrefs(), lr=0.05, refuse_step=("worker0",))
    # The constructor's call to worker0 itself counts as served until just
    # after its reply was sent.
    wait_for(lambda: rpc.debug_info()["num_active_requests"] == 0, 5.0, "the constructor's call to end")
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.loss(INPUTS[0])])
        with pytest.raises(ValueError, match="^Error running optimizer on worker0: no step on worker0"):
            optimizer.step(context_id)
    assert rpc.debug_info()["num_active_requests"] == 0


def test_owner_outside_the_forward_keeps_its_parameters(cluster):
    # The step's own RPC carries the context to worker2, which holds no
    # gradients in it: its parameters are left alone.
    model = SplitModel()
    before = model.parameters()
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05)
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.first.rpc_sync().forward(INPUTS[0]).sum()])
        optimizer.step(context_id)
    layer = local_layers()[0]
    layer(INPUTS[0]).sum().backward()
    torch.optim.SGD(layer.parameters(), lr=0.05).step()
    assert_all_equal(model.parameters(), [p.detach() for p in layer.parameters()] + before[3:])


def test_step_from_a_thread_outside_the_context(cluster):
    # Called where the context is not current, the step reaches worker2
    # without it, and worker2 never knew it.
    model = SplitModel()
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=0.05)
    with dist_autograd.context() as context_id:
        dist_autograd.backward(context_id, [model.first.rpc_sync().forward(INPUTS[0]).sum()])
        with pytest.raises(ValueError, match=f"^Error running optimizer on worker2: distributed autograd context "
                                             f"{context_id} is not known on this worker"):
            in_fresh_thread(optimizer.step, context_id)


@pytest.mark.parametrize("released", [False, True], ids=["never-created", "released"])
def test_step_with_an_unknown_context_runs_nothing(cluster, released):
    model = SplitModel()
    optimizer = DistributedOptimizer(optim_fns.CountingSGD, model.parameter_rrefs(), lr=0.05)
    for worker in ["worker0", "worker1", "worker2"]:
        rpc.rpc_sync(worker, optim_fns.step_log)  # starts a new log
    context_id = 12345
    if released:
        with dist_autograd.context() as context_id:
            dist_autograd.backward(context_id, [model.loss(INPUTS[0])])
    with pytest.raises(ValueError, match=f"distributed autograd context {context_id} is not known on this worker"):
        optimizer.step(context_id)
    assert [rpc.rpc_sync(w, optim_fns.step_log)["steps"] for w in ["worker0", "worker1", "worker2"]] == [0, 0, 0]


@pytest.mark.parametrize("optimizer_class, kwargs, message", [
    (torch.optim.SGD, {"lr": -1.0}, "^Error creating optimizer SGD on worker1: Invalid learning rate: -1.0"),
    (optim_fns.RefusingSGD, {"lr": 0.1, "refuse_create": ["worker2", "worker0"]},
     "^Error creating optimizer RefusingSGD on worker2: no optimizer on worker2"),
    (torch.optim.SGD, {"lr": 0.1, "betas": (0.9, 0.99)},
     r"^Error creating optimizer SGD on worker1: .*unexpected keyword argument 'betas'"),
], ids=["bad-lr", "refused", "bad-keyword"])
def test_creation_error_names_the_owner(cluster, optimizer_class, kwargs, message):
    model = SplitModel()
    with pytest.raises((ValueError, TypeError), match=message) as excinfo:
        DistributedOptimizer(optimizer_class, model.parameter_rrefs(), **kwargs)
    assert type(excinfo.value) is (TypeError if "betas" in kwargs else ValueError)


def test_params_rref_must_hold_rrefs(cluster):
    with pytest.raises(ValueError, match="params_rref is empty"):
        DistributedOptimizer(torch.optim.SGD, [], lr=0.1)
    param = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match=r"params_rref\[1\] is a Tensor, expected a distgrad.rpc.RRef"):
        DistributedOptimizer(torch.optim.SGD, [rpc.RRef(param), param], lr=0.1)
