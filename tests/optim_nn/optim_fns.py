"""Modules, optimizers and functions the optimizer and RemoteModule tests
run on other workers (pickled by reference, so they live in a module every
worker imports)."""

import threading
import time
from pathlib import Path

import torch
import torch.nn as nn

import distgrad.rpc as rpc


class Affine(nn.Module):
    """x @ weight.T + bias with parameters drawn from ``seed``, so that every
    worker builds the same values. ``spare`` adds a parameter forward never
    uses (it never has a gradient)."""

    def __init__(self, n_in, n_out, seed, spare=False):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=generator))
        self.bias = nn.Parameter(torch.randn(n_out, generator=generator))
        if spare:
            self.spare = nn.Parameter(torch.randn(n_out, generator=generator))

    def forward(self, x, scale=1.0):
        return (x @ self.weight.t() + self.bias) * scale


class TwoLayers(nn.Module):
    """Affine, tanh, Affine, with every parameter in a submodule, and a
    dropout layer whose mode shows train() and eval()."""

    def __init__(self, seed):
        super().__init__()
        self.first = Affine(4, 3, seed)
        self.dropout = nn.Dropout(0.5)
        self.second = Affine(3, 2, seed + 1)

    def forward(self, x):
        return self.second(self.dropout(self.first(x).tanh()))


def parameter_rrefs(module_rref):
    """RRefs to the parameters of the module module_rref refers to (on its owner)."""
    return [rpc.RRef(p) for p in module_rref.local_value().parameters()]


def parameters_of(module_rref):
    """Copies of the parameters of the module (on its owner)."""
    return [p.detach().clone() for p in module_rref.local_value().parameters()]


def grads_of(module_rref):
    """The .grad of each parameter of the module (on its owner)."""
    return [p.grad for p in module_rref.local_value().parameters()]


def set_grads(module_rref, value):
    """Sets .grad of each parameter of the module to a tensor full of value."""
    for p in module_rref.local_value().parameters():
        p.grad = torch.full_like(p, value)


# Optimizers that record or disturb their steps. Each worker keeps its own
# record, read with step_log() through an RPC.

_log_lock = threading.Lock()
_log = {"steps": 0, "active": 0, "max_active": 0, "grads": []}


def step_log():
    """What the recording optimizers of this worker did since the last call."""
    with _log_lock:
        log = dict(_log, grads=list(_log["grads"]))
        _log.update(steps=0, active=0, max_active=0, grads=[])
    return log


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps in step_log()."""

    def step(self, closure=None):
        with _log_lock:
            _log["steps"] += 1
        return super().step(closure)


class OverlapCheckingSGD(torch.optim.SGD):
    """SGD recording in step_log() the .grad each step sees and how many of
    its steps run at the same time. The first step waits (at most 10 s)
    until this worker serves ``parties`` requests, so that the others are
    in flight while it runs."""

    def __init__(self, params, lr, parties):
        super().__init__(params, lr=lr)
        self.parties = parties

    def step(self, closure=None):
        with _log_lock:
            first = _log["steps"] == 0
            _log["steps"] += 1
            _log["active"] += 1
            _log["max_active"] = max(_log["max_active"], _log["active"])
            _log["grads"].append([p.grad.clone() for group in self.param_groups for p in group["params"]])
        try:
            if first:
                _wait_until(lambda: rpc.debug_info()["num_active_requests"] >= self.parties, 10.0,
                            f"{self.parties} requests served at once")
            return super().step(closure)
        finally:
            with _log_lock:
                _log["active"] -= 1


class MeetingSGD(torch.optim.SGD):
    """SGD whose step announces itself in ``directory`` and waits (at most
    10 s) until steps have started on every worker of ``parties``: it fails
    unless those steps run at the same time."""

    def __init__(self, params, lr, directory, parties):
        super().__init__(params, lr=lr)
        self.directory = Path(directory)
        self.parties = parties

    def step(self, closure=None):
        (self.directory / rpc.get_worker_info().name).touch()
        _wait_until(lambda: all((self.directory / name).exists() for name in self.parties), 10.0,
                    f"steps to start on {self.parties}")
        return super().step(closure)


class RefusingSGD(torch.optim.SGD):
    """SGD that refuses to be created on the workers of ``refuse_create``
    and to step on those of ``refuse_step`` (ValueError naming the worker)."""

    def __init__(self, params, lr, refuse_create=(), refuse_step=()):
        me = rpc.get_worker_info().name
        if me in refuse_create:
            raise ValueError(f"no optimizer on {me}")
        super().__init__(params, lr=lr)
        self.refuse_step = refuse_step

    def step(self, closure=None):
        me = rpc.get_worker_info().name
        if me in self.refuse_step:
            raise ValueError(f"no step on {me}")
        return super().step(closure)


def _wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{rpc.get_worker_info().name} waited {timeout} s for {what}")
        time.sleep(0.005)



# For the native optimizer tests (tests/test_optim_native.py).

def make_parameter(values):
    """A parameter (a leaf that requires grad) holding values, made on the
    worker that calls it (the owner of the RRef rpc.remote returns)."""
    return torch.tensor(values, requires_grad=True)


def weighted_sum(parameter_rref, x):
    """(parameter * x).sum() on the parameter's owner: its gradient is x."""
    return (parameter_rref.local_value() * x).sum()


def value_of(parameter_rref):
    """A copy of the parameter (on its owner)."""
    return parameter_rref.local_value().detach().clone()


def native_steps():
    """How many native optimizer steps this worker has run."""
    return rpc.debug_info()["num_native_optimizer_steps"]


def steps_under_way():
    """How many steps of the recording optimizers run here now."""
    with _log_lock:
        return _log["active"]


class SlowSGD(torch.optim.SGD):
    """SGD (a subclass, so it takes the Python path) whose step lasts at
    least 0.3 s and records in step_log() how many native steps this worker
    ran before it and when it ended."""

    def step(self, closure=None):
        with _log_lock:
            _log["steps"] += 1
            _log["active"] += 1
        before = native_steps()
        time.sleep(0.3)
        after = native_steps()
        with _log_lock:
            _log["active"] -= 1
            _log["grads"].append((before, after))
        return super().step(closure)


def rrefs_to(parameter_rref, count):
    """count RRefs to the parameter (on its owner): an optimizer given them
    lists the parameter count times."""
    return [rpc.RRef(parameter_rref.local_value()) for _ in range(count)]
