"""Native optimizers: the torch.optim optimizers and arguments distgrad's C++
optimizers (operators/optim) implement with the same tensor operations as
torch, so that their results are equal bit for bit, and their creation on an
owner. A DistributedOptimizer whose owners all hold one steps without Python
on the owners (see docs/design.md, "Optimizers").

Native: ``torch.optim.SGD`` and ``torch.optim.Adagrad``. libtorch's own C++
optimizers were compared with Python's over 10 steps (torch 2.13, CPU,
float32 and float64): SGD and Adagrad matched bit for bit, Adam and AdamW
did not (Python's use lerp_), nor did RMSprop with centered=True; those,
RMSprop and every other class or subclass keep the Python path.
"""

import inspect

import torch

from . import _C

# The arguments that must be plain numbers (not tensors), by class.
_NUMBERS = {
    torch.optim.SGD: ("lr", "momentum", "dampening", "weight_decay"),
    torch.optim.Adagrad: ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
}
_SIGNATURES = {cls: inspect.signature(cls) for cls in _NUMBERS}


def maps_onto_native(optimizer_class, args, kwargs):
    """Whether ``optimizer_class(params, *args, **kwargs)`` has a native
    implementation: exactly torch.optim.SGD or torch.optim.Adagrad, with
    numbers (not tensors) for their hyperparameters, and maximize, foreach,
    fused and differentiable at their defaults. Arguments the class would
    reject keep the Python path, where the owner raises torch's own error."""
    if optimizer_class not in _NUMBERS:  # a subclass is not its base
        return False
    try:
        bound = _SIGNATURES[optimizer_class].bind(None, *args, **kwargs)
    except TypeError:
        return False
    bound.apply_defaults()
    given = bound.arguments
    return (all(_is_plain_number(given[name]) for name in _NUMBERS[optimizer_class])
            and type(given.get("nesterov", False)) is bool and given["maximize"] is False
            and given["foreach"] in (None, False) and given["fused"] in (None, False)
            and given["differentiable"] is False)


def _is_plain_number(value):
    """A float, or an int the C++ side's double holds exactly."""
    return type(value) is float or (type(value) is int and abs(value) <= 2**53)


def create(optimizer, params):
    """On an owner: the native counterpart of ``optimizer`` (built from
    arguments maps_onto_native accepted, which validated them) over
    ``params``, starting from its state, or None if these parameters need
    torch's own: one not on the CPU (torch may use its foreach kernels
    there), one of a tensor subclass other than Parameter (its operations
    may run Python code), or one listed twice."""
    if (any(p.device.type != "cpu" or type(p) not in (torch.Tensor, torch.nn.Parameter) for p in params)
            or len({id(p) for p in params}) != len(params)):
        return None
    group = optimizer.param_groups[0]
    if type(optimizer) is torch.optim.SGD:
        return _C._native_sgd(params, float(group["lr"]), float(group["momentum"]), float(group["dampening"]),
                              float(group["weight_decay"]), group["nesterov"])
    state = [optimizer.state[p] for p in params]
    return _C._native_adagrad(params, float(group["lr"]), float(group["lr_decay"]), float(group["weight_decay"]),
                              float(group["eps"]), [s["step"] for s in state], [s["sum"] for s in state])
