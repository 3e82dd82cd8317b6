"""Functions and classes the RRef tests run on other workers."""

import threading
import time

import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc


class Counter:
    """A plain object kept on its owner and used through RRefs."""

    def __init__(self, start=0):
        self.value = start
        self._lock = threading.Lock()

    def add(self, n):
        with self._lock:
            self.value += n
            return self.value

    def get(self):
        return self.value

    def fail(self, message):
        raise ValueError(message)

    @staticmethod
    def static_twice(x):
        return x * 2

    @classmethod
    def make(cls, start):
        return cls(start)

    @rpc.functions.async_execution
    def add_later(self, n, delay):
        """Adds n after delay seconds, without holding the caller's thread."""
        future = torch.futures.Future()

        def finish():
            time.sleep(delay)
            future.set_result(self.add(n))

        threading.Thread(target=finish, daemon=True).start()
        return future


class Point:
    """A plain picklable object."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def make_tensor(value, size):
    return torch.full((size,), float(value))


def raise_value_error(message):
    raise ValueError(message)


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def to_here(rref):
    """Fetches the value of rref on this worker."""
    return rref.to_here()


def describe(rref):
    """What this worker sees of rref."""
    return {"owner": rref.owner_name(), "is_owner": rref.is_owner(), "value": rref.to_here()}


def owner_of(rref):
    return rref.owner_name(), rref.is_owner()


def local_value(rref):
    return rref.local_value()


def identity(x):
    return x


def nested_values(container):
    """Replaces every RRef in a list/dict/tuple nest by its value."""
    if isinstance(container, rpc.RRef):
        return container.to_here()
    if isinstance(container, dict):
        return {k: nested_values(v) for k, v in container.items()}
    if isinstance(container, (list, tuple)):
        return type(container)(nested_values(v) for v in container)
    return container


class Holder:
    """An object with an RRef attribute, pickled by value."""

    def __init__(self, rref):
        self.rref = rref


def value_in_holder(holder):
    return holder.rref.to_here()


def remote_on(dst, func, args):
    """Makes an RRef on dst from this worker and returns it (an RRef whose
    owner is not the caller's peer)."""
    return rpc.remote(dst, func, args)


def rref_list(n, value):
    """n RRefs owned by this worker."""
    return [rpc.RRef(torch.full((2,), float(value + i))) for i in range(n)]


def pass_on(dst, rref):
    """Sends rref on to dst, which fetches its value."""
    return rpc.rpc_sync(dst, to_here, (rref,))


def confirmed(rref):
    return rref.confirmed_by_owner()


def keep_for(rref, seconds):
    """Holds rref for a while (so its fork outlives the call)."""
    time.sleep(seconds)
    return rref.to_here()


_kept = []


def keep(rref):
    _kept.append(rref)


def drop_kept():
    _kept.clear()


def param(value):
    """A leaf tensor that requires grad, kept on this worker."""
    return torch.tensor(value, requires_grad=True)


def grad_of(context_id, rref):
    """The gradient this worker holds for rref's value in context_id, or None."""
    value = rref.local_value()
    for leaf, grad in dist_autograd.get_gradients(context_id).items():
        if leaf is value:
            return grad
    return None


def call_add(rref, n):
    """Calls rref's add through a proxy from this worker."""
    return rref.rpc_sync().add(n)


class Scale(torch.nn.Module):
    """y = x * w + b with fixed parameters, kept on its owner."""

    def __init__(self, w, b):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))
        self.b = torch.nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return x * self.w + self.b


def parameter_grads(context_id, module_rref):
    """The gradients of module_rref's parameters held here in context_id."""
    grads = dist_autograd.get_gradients(context_id)
    module = module_rref.local_value()
    return {name: grads.get(p) for name, p in module.named_parameters()}


def scaled_value(rref, factor):
    """rref's value (fetched here) times factor."""
    return rref.to_here() * factor


def run_backward(rref, context_id):
    rref.backward(context_id)


# OS names of the threads that destroyed DestroyedWhere objects here.
_destroyed_on = []


def _os_thread_name():
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().strip()


class DestroyedWhere:
    """A value whose destructor (user code) records the thread it runs on."""

    def __del__(self):
        _destroyed_on.append(_os_thread_name())


def destroyed_on():
    return list(_destroyed_on)
