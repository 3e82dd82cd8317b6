"""Optimizers for parameters that live on several workers.

``DistributedOptimizer`` keeps one local ``torch.optim`` optimizer on each
worker that owns some of the parameters, and steps all of them with the
gradients a distributed backward pass left in one autograd context.
"""

from . import _C, _native_optim
from . import autograd as dist_autograd
from . import rpc

__all__ = ["DistributedOptimizer"]

# Serializes the steps run on this worker, with those of native optimizers
# (one lock in C++ for both). A step sets ``.grad`` of its parameters from
# its context for the time of the step; steps of other trainers (other
# contexts, other DistributedOptimizers over the same parameters) must not
# see those gradients nor overwrite them meanwhile.
_step_lock = _C._StepLock()


class DistributedOptimizer:
    """An optimizer for parameters held by any workers of the job.

    ``params_rref`` lists RRefs to the parameters (tensors that require
    grad, each owned by the worker that holds it). For each owner, in the
    order owners first appear in the list, the constructor creates
    ``optimizer_class(params, *args, **kwargs)`` on that owner over the
    parameters it holds (all owners in parallel), and raises if any
    creation failed, naming the owner: the error keeps the type the owner
    raised.

    ``step(context_id)`` runs every owner's optimizer at the same time, each
    with the gradients its worker holds in that distributed autograd
    context (``distgrad.autograd.get_gradients`` there). A parameter
    without a gradient in the context is left alone, as a local optimizer
    skips a parameter whose ``.grad`` is None. ``.grad`` itself is neither
    read nor changed: the context's gradients replace it only for the
    duration of the step, one step at a time on each worker, so trainers
    stepping the same parameters concurrently each apply their own
    gradients, one after the other.

    For ``torch.optim.SGD`` and ``torch.optim.Adagrad`` themselves (not
    subclasses) with numbers for their hyperparameters and ``maximize``,
    ``foreach``, ``fused`` and ``differentiable`` at their defaults, each
    owner holds a native (C++) optimizer over CPU parameters instead, which
    computes what torch's does, bit for bit: a step then runs no Python on
    the owners. Any other optimizer
    runs as a ``torch.optim`` optimizer on each owner.

    Example::

        opt = DistributedOptimizer(torch.optim.SGD, param_rrefs, lr=0.05)
        with distgrad.autograd.context() as context_id:
            loss = model(inputs).sum()
            distgrad.autograd.backward(context_id, [loss])
            opt.step(context_id)
    """

    def __init__(self, optimizer_class, params_rref, *args, **kwargs):
        by_owner = {}
        for index, rref in enumerate(params_rref):
            if not isinstance(rref, rpc.RRef):
                raise TypeError(f"DistributedOptimizer: params_rref[{index}] is a {type(rref).__name__}, "
                                "expected a distgrad.rpc.RRef to a parameter")
            by_owner.setdefault(rref.owner(), []).append(rref)
        if not by_owner:
            raise ValueError("DistributedOptimizer: params_rref is empty, expected RRefs to parameters")
        name = getattr(optimizer_class, "__qualname__", repr(optimizer_class))
        native = _native_optim.maps_onto_native(optimizer_class, args, kwargs)
        calls = [(owner, rpc.rpc_async(owner, _create_local_optimizer,
                                       args=(optimizer_class, rrefs, args, kwargs, native)))
                 for owner, rrefs in by_owner.items()]
        created = _wait_for_all(calls, f"Error creating optimizer {name}")
        self.remote_optimizers = [rref for rref, _ in created]
        # (owner rank, native optimizer id) for each owner, if all hold one.
        self._native_targets = None
        if all(native_id is not None for _, native_id in created):
            self._native_targets = [(rref.owner().id, native_id) for rref, native_id in created]

    def step(self, context_id):
        """Applies one step of every owner's optimizer with the gradients of
        distributed autograd context ``context_id``, and returns once all
        have finished. If any failed, raises the error of the first owner
        (in the order of the constructor's ``params_rref``) whose step
        failed, naming that owner. An id unknown on this worker fails before
        any owner is asked.

        Call it where the context is current (inside its ``with`` block): the
        step's calls then carry the context to owners the forward pass did
        not reach, which hold no gradients in it and leave their parameters
        alone. Called from elsewhere, such an owner fails, not knowing the
        context."""
        if self._native_targets is not None:
            _C._native_optimizer_step(self._native_targets, context_id)
            return
        # Raises ValueError naming the id if this worker does not know it.
        dist_autograd.get_gradients(context_id)
        me = rpc.get_worker_info()
        calls, here = [], None
        for rref in self.remote_optimizers:
            owner = rref.owner()
            if owner == me:
                here = (len(calls), rref)  # stepped below, while the others step
                calls.append(None)
            else:
                calls.append((owner, rpc.rpc_async(owner, _step_local_optimizer, args=(rref, context_id))))
        if here is not None:
            index, rref = here
            calls[index] = (me, _Outcome(_step_local_optimizer, rref, context_id))
        _wait_for_all(calls, "Error running optimizer")


class _LocalOptimizer:
    """On an owner: one optimizer over the parameters this worker holds."""

    def __init__(self, optimizer, params):
        self.optimizer = optimizer
        self.params = params

    def step(self, context_id):
        gradients = {id(tensor): grad for tensor, grad in dist_autograd.get_gradients(context_id).items()}
        with _step_lock:
            saved = [param.grad for param in self.params]
            try:
                for param in self.params:
                    param.grad = gradients.get(id(param))
                self.optimizer.step()
            finally:
                for param, grad in zip(self.params, saved):
                    param.grad = grad


def _create_local_optimizer(optimizer_class, param_rrefs, args, kwargs, native):
    """On an owner: an RRef to its optimizer, and the optimizer's id if it is
    native (None otherwise). The native one is freed with the RRef's value."""
    params = [rref.local_value() for rref in param_rrefs]
    # Built even for a native one: torch validates the arguments.
    optimizer = optimizer_class(params, *args, **kwargs)
    local = _native_optim.create(optimizer, params) if native else None
    if local is not None:
        return rpc.RRef(local), local.id
    return rpc.RRef(_LocalOptimizer(optimizer, params)), None


def _step_local_optimizer(optimizer_rref, context_id):
    # A native optimizer gets here when another owner of its
    # DistributedOptimizer holds a torch.optim one.
    optimizer_rref.local_value().step(context_id)


class _Outcome:
    """The outcome of fn(*args) run here, waited for like a call's future."""

    def __init__(self, fn, *args):
        try:
            self._value, self._error = fn(*args), None
        except Exception as error:  # noqa: BLE001 - raised by wait()
            self._value, self._error = None, error

    def wait(self):
        if self._error is not None:
            raise self._error
        return self._value


def _wait_for_all(calls, what):
    """Waits for the future of each (owner, future) of calls (each bounded by
    its RPC timeout) and returns their values. If any failed, raises the
    error of the first that did, its message prefixed with what and the
    owner's name."""
    results, first_error = [], None
    for owner, future in calls:
        try:
            results.append(future.wait())
        except Exception as error:  # noqa: BLE001 - the first one is re-raised below
            if first_error is None:
                first_error = error
                error.args = (f"{what} on {owner.name}: {error.args[0] if error.args else ''}", *error.args[1:])
    if first_error is not None:
        raise first_error
    return results
