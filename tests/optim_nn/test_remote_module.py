"""RemoteModule: a module created on another worker and used from here:
forward, remote parameters, modes, training with DistributedOptimizer equal
to local training, unsupported methods, devices, and travelling through RPC."""

import copy
import io
import pickle

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from distgrad.nn import RemoteModule
from distgrad.optim import DistributedOptimizer
from tests.optim_nn import nn_fns, optim_fns
from tests.checks import assert_same

WORLD_SIZE = 3

_generator = torch.Generator().manual_seed(0)
INPUTS = [torch.randn(2, 4, generator=_generator) for _ in range(3)]


def affine(remote_device, seed=1):
    return RemoteModule(remote_device, optim_fns.Affine, (4, 3), {"seed": seed})


@pytest.mark.parametrize("remote_device, owner", [
    ("worker1/cpu", "worker1"), ("worker1", "worker1"), ("rank:2/cpu", "worker2"), ("worker0/cpu", "worker0"),
])
def test_forward_runs_on_the_owner(cluster, remote_device, owner):
    module = affine(remote_device)
    local = optim_fns.Affine(4, 3, seed=1)
    x = INPUTS[0]
    assert_same(module(x), local(x))
    assert_same(module.forward(x, scale=2.0), local(x, scale=2.0))
    future = module.forward_async(x)
    assert isinstance(future, torch.futures.Future)
    assert_same(future.wait(), local(x))
    assert module.get_module_rref().owner_name() == owner
    assert module.remote_device == (remote_device if "/" in remote_device else remote_device + "/cpu")
    assert repr(module) == f"RemoteModule(remote_device={module.remote_device!r})"


def test_remote_parameters_are_the_modules_own(cluster):
    module = RemoteModule("worker1/cpu", optim_fns.TwoLayers, (1,))
    params = module.remote_parameters()
    local = optim_fns.TwoLayers(1)
    assert [p.owner_name() for p in params] == ["worker1"] * 4
    assert_same([p.to_here() for p in params], [p.detach() for p in local.parameters()])
    assert rpc.rpc_sync("worker1", nn_fns.are_parameters_of, (module.get_module_rref(), params))
    # TwoLayers holds its parameters in submodules only.
    assert module.remote_parameters(recurse=False) == []


def test_train_and_eval_set_the_remote_mode(cluster):
    module = RemoteModule("worker1/cpu", optim_fns.TwoLayers, (1,))
    flags = lambda: rpc.rpc_sync("worker1", nn_fns.training_flags, (module.get_module_rref(),))  # noqa: E731
    assert flags() == [True] * 4 and module.training
    assert module.eval() is module
    assert flags() == [False] * 4 and not module.training
    # In evaluation mode the dropout layer lets everything through.
    local = optim_fns.TwoLayers(1).eval()
    assert_same(module(INPUTS[0]), local(INPUTS[0]))
    assert module.train() is module
    assert flags() == [True] * 4 and module.training


@pytest.mark.parametrize("call", ["call", "forward", "forward_async"])
def test_training_through_a_remote_module_equals_local_training(cluster, call):
    # Affine(4, 3) on worker1, tanh and Affine(3, 1) here: every gradient is
    # computed by the same operations as locally, so parameters are equal bit
    # for bit after SGD with momentum.
    remote = affine("worker1/cpu")
    head = optim_fns.Affine(3, 1, seed=2)
    params = remote.remote_parameters() + [rpc.RRef(p) for p in head.parameters()]
    optimizer = DistributedOptimizer(torch.optim.SGD, params, lr=0.05, momentum=0.9)
    run = {"call": remote, "forward": remote.forward, "forward_async": lambda x: remote.forward_async(x).wait()}[call]
    for x in INPUTS:
        with dist_autograd.context() as context_id:
            loss = head(run(x).tanh()).pow(2).sum()
            dist_autograd.backward(context_id, [loss])
            optimizer.step(context_id)

    local_first, local_head = optim_fns.Affine(4, 3, seed=1), optim_fns.Affine(3, 1, seed=2)
    local_optimizer = torch.optim.SGD([*local_first.parameters(), *local_head.parameters()], lr=0.05, momentum=0.9)
    for x in INPUTS:
        local_optimizer.zero_grad()
        local_head(local_first(x).tanh()).pow(2).sum().backward()
        local_optimizer.step()
    assert_same([p.to_here() for p in remote.remote_parameters()], [p.detach() for p in local_first.parameters()])
    assert_same([p.detach() for p in head.parameters()], [p.detach() for p in local_head.parameters()])
    assert rpc.rpc_sync("worker1", optim_fns.grads_of, (remote.get_module_rref(),)) == [None, None]


@pytest.mark.parametrize("method, args", [
    ("cuda", ()), ("to", ("cpu",)), ("float", ()), ("state_dict", ()), ("load_state_dict", ({},)), ("zero_grad", ()),
    ("buffers", ()), ("modules", ()), ("children", ()), ("apply", (print,)), ("requires_grad_", ()),
    ("register_forward_hook", (print,)), ("register_buffer", ("b", torch.zeros(1))), ("share_memory", ()),
])
def test_unsupported_methods_name_themselves(cluster, method, args):
    module = affine("worker1/cpu")
    with pytest.raises(ValueError, match=rf"^RemoteModule does not support {method}\(\): the module lives on worker1$"):
        getattr(module, method)(*args)


@pytest.mark.parametrize("method", ["parameters", "named_parameters"])
def test_parameters_point_to_remote_parameters(cluster, method):
    module = affine("worker1/cpu")
    with pytest.raises(ValueError, match=rf"^RemoteModule does not support {method}\(\): the module lives on worker1; "
                                         r"use remote_parameters\(\) for RRefs to its parameters$"):
        getattr(module, method)()


@pytest.mark.parametrize("remote_device, error, message", [
    ("worker1/cuda:0", ValueError, r"^remote_device 'worker1/cuda:0': device 'cuda:0' is not supported; .*"
                                   r"\(CUDA is not supported\)$"),
    ("worker1/cpu2", ValueError, r"^remote_device 'worker1/cpu2': invalid device 'cpu2'"),
    ("nobody/cpu", ValueError, r"^unknown worker 'nobody' \(the workers are: worker0, worker1, worker2\)$"),
    ("rank:3/cpu", ValueError, r"^rank 3 is out of range for a job of 3 workers$"),
    ("rank:one/cpu", ValueError, r"^could not parse remote_device 'rank:one/cpu': the rank is not an integer"),
    ("/cpu", ValueError, r"^could not parse remote_device '/cpu': expected '<worker name>/<device>'"),
    ("worker1/cpu/0", ValueError, r"^could not parse remote_device 'worker1/cpu/0'"),
    (1, TypeError, r"^remote_device must be a string, got int$"),
])
def test_bad_remote_devices_fail_at_once(cluster, remote_device, error, message):
    with pytest.raises(error, match=message):
        RemoteModule(remote_device, optim_fns.Affine, (4, 3), {"seed": 1})


@pytest.mark.parametrize("module_cls, error, message", [
    (nn_fns.three, ValueError, r"^RemoteModule: three\(\*args, \*\*kwargs\) returned a int on worker1, "
                               r"expected a torch.nn.Module"),
    (nn_fns.FailingModule, ValueError, r"^FailingModule refuses to be built"),
])
def test_creation_errors_surface_on_first_use(cluster, module_cls, error, message):
    module = RemoteModule("worker1/cpu", module_cls)
    with pytest.raises(error, match=message) as excinfo:
        module(INPUTS[0])
    assert "raised on worker 'worker1'" in str(excinfo.value)


def test_pickling_outside_rpc_fails(cluster):
    module = affine("worker1/cpu")
    for pickle_it in (pickle.dumps, copy.deepcopy, copy.copy, lambda m: torch.save(m, io.BytesIO())):
        with pytest.raises(RuntimeError, match=r"^a RemoteModule can only be pickled as part of a distgrad RPC"):
            pickle_it(module)


@pytest.mark.parametrize("receiver", ["worker2", "worker1", "worker0"], ids=["third-worker", "owner", "self"])
def test_sent_through_rpc_it_works_on_the_receiver(cluster, receiver):
    module = affine("worker1/cpu")
    assert rpc.rpc_sync(receiver, nn_fns.describe, (module,)) == (
        "RemoteModule", "worker1/cpu", "worker1", receiver == "worker1")
    output, where = rpc.rpc_sync(receiver, nn_fns.forward_on_me, (module, INPUTS[0]))
    assert where == receiver
    assert_same(output, optim_fns.Affine(4, 3, seed=1)(INPUTS[0]))


def test_returned_through_rpc_it_works_here(cluster):
    module = rpc.rpc_sync("worker2", nn_fns.make_remote_module, ("rank:1/cpu", 3))
    assert isinstance(module, RemoteModule) and module.remote_device == "rank:1/cpu"
    assert module.get_module_rref().owner_name() == "worker1"
    assert_same(module(INPUTS[0]), optim_fns.Affine(4, 3, seed=3)(INPUTS[0]))


def test_init_from_module_rref(cluster):
    module_rref = rpc.remote("worker1", optim_fns.Affine, (4, 3), {"seed": 1})
    module = RemoteModule.init_from_module_rref("worker1/cpu", module_rref)
    assert module.get_module_rref() is module_rref
    assert_same(module(INPUTS[0]), optim_fns.Affine(4, 3, seed=1)(INPUTS[0]))
    with pytest.raises(ValueError, match=r"^RemoteModule: module_rref is owned by worker1, not by the worker of "
                                         r"remote_device 'worker2/cpu'$"):
        RemoteModule.init_from_module_rref("worker2/cpu", module_rref)
