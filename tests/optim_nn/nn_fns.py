"""Functions the RemoteModule tests run on other workers (pickled by
reference, so they live in a module every worker imports)."""

import torch.nn as nn

import distgrad.rpc as rpc
from distgrad.nn import RemoteModule
from tests.optim_nn import optim_fns


def forward_on_me(remote_module, x):
    """remote_module(x) called on this worker, and this worker's name."""
    return remote_module(x), rpc.get_worker_info().name


def describe(remote_module):
    """What a received RemoteModule looks like on this worker."""
    return (type(remote_module).__qualname__, remote_module.remote_device,
            remote_module.get_module_rref().owner_name(), remote_module.get_module_rref().is_owner())


def make_remote_module(remote_device, seed):
    """A RemoteModule over an Affine(4, 3) created from this worker."""
    return RemoteModule(remote_device, optim_fns.Affine, (4, 3), {"seed": seed})


def training_flags(module_rref):
    """The training flag of the module and each of its submodules (on its owner)."""
    return [m.training for m in module_rref.local_value().modules()]


def are_parameters_of(module_rref, param_rrefs):
    """Whether param_rrefs refer to the module's own Parameters, in order (on its owner)."""
    params = list(module_rref.local_value().parameters())
    return len(params) == len(param_rrefs) and all(r.local_value() is p for r, p in zip(param_rrefs, params))


def three():
    """Not an nn.Module."""
    return 3


class FailingModule(nn.Module):
    """A module whose constructor raises."""

    def __init__(self):
        super().__init__()
        raise ValueError("FailingModule refuses to be built")
