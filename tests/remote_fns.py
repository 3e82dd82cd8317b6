"""Python functions the tests run on other workers. They travel pickled by
reference, so they must live in a module every worker can import."""

import os
import pathlib
import threading
import time

import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc


class CustomError(Exception):
    """An exception class that is not a Python built-in."""


def whoami():
    return rpc.get_worker_info().name


def identity(x):
    return x


def add(a, b):
    return a + b


def combine(a, b, *, scale=1, tag="none"):
    """Returns a nested structure mixing tensors and plain values."""
    return {
        "sum": a + scale * b,
        "parts": [a, (b, tag)],
        "meta": {"scale": scale, "shapes": (tuple(a.shape), tuple(b.shape))},
        "where": whoami(),
    }


def transposed(t):
    return t.t()


def every_other(t):
    return t[::2]


def sleep_and_return(seconds, value):
    time.sleep(seconds)
    return value


def touch_then_sleep(path, seconds):
    """Creates path (so the caller knows the call is running), then sleeps."""
    pathlib.Path(path).touch()
    time.sleep(seconds)
    return seconds


def raise_value_error(message):
    raise ValueError(message)


def raise_key_error(key):
    return {}[key]


def bad_decode():
    return b"\xff".decode()


def divide(a, b):
    return a / b


def raise_custom_error(message):
    raise CustomError(message)


def relay(route, t):
    """Adds 1 to t on this worker, then passes it on along route (worker
    names); returns the result and the names of the workers it went through."""
    t = t + 1
    if not route:
        return t, [whoami()]
    result, path = rpc.rpc_sync(route[0], relay, (route[1:], t))
    return result, [whoami(), *path]


def call(to, func, args=(), kwargs=None, timeout=-1.0):
    """Makes an rpc_sync from this worker."""
    return rpc.rpc_sync(to, func, args, kwargs, timeout)


# Distributed autograd ---------------------------------------------------------
#
# The functions below take a `call(dst, func, *args)` argument for the calls
# they make to other workers: rpc_call runs them across the job, local_call
# runs the same computation in this process, which is the reference the
# tests compare gradients with.


def rpc_call(dst, func, *args):
    """func(*args) on worker dst, by rpc_sync."""
    return rpc.rpc_sync(dst, func, args)


def local_call(dst, func, *args):
    """func(*args) here, whatever dst: the reference computation."""
    return func(*args)


# Leaves that live on every worker, with the same values everywhere: a worker
# using them in a call holds their gradients in its copy of the context.
PARAMS = {
    "w": torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], requires_grad=True),
    "b": torch.tensor([0.125, -0.5, 3.0], requires_grad=True),
    "hooked": torch.tensor([1.0, -2.0, 0.5], requires_grad=True),
}
_param_hooks = []


def param_gradient(context_id, name):
    """The gradient this worker holds for PARAMS[name] in context_id, or None."""
    for leaf, grad in dist_autograd.get_gradients(context_id).items():
        if leaf is PARAMS[name]:
            return grad
    return None


def param_dot_grads():
    """The .grad of every parameter (distributed backward must leave them None)."""
    return {name: p.grad for name, p in PARAMS.items()}


def scale_and_shift(x):
    """x (2x3) times PARAMS["w"] plus PARAMS["b"]."""
    return x * PARAMS["w"] + PARAMS["b"]


def get_param(name):
    return PARAMS[name]


def several_outputs(x):
    """Four results of which callers may use only some."""
    return x * 2, x * PARAMS["w"], PARAMS["b"] * 3, (x * x).sum()


def step(t):
    """One hop of chain."""
    return t * 1.5 + t.sin()


def chain(call, route, t):
    """step(t) here, then chain along route (worker names)."""
    t = step(t)
    if not route:
        return t
    return call(route[0], chain, call, route[1:], t)


def via(call, middle, dst, x, y):
    """On the middle worker: u = x * y, then torch.mul(u, x) on dst; returns
    the product plus u (so both the nested call and the local use of u carry
    gradients back)."""
    u = x * y
    return call(dst, torch.mul, u, x) + u


def fan_out(call, left, right, t):
    """A diamond whose branches run on two other workers and meet here."""
    a = call(left, torch.exp, t)
    b = call(right, torch.mul, t, t)
    return a * b


def square(t):
    """t * t: a backward that needs tensors saved on this worker."""
    return t * t


def requires_grad_of(*tensors):
    return [t.requires_grad for t in tensors]


class FailingBackward(torch.autograd.Function):
    """The identity, whose backward raises ValueError."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise ValueError("boom from backward")


def fail_in_backward(route, t):
    """Passes t * 2 along route; the last worker applies FailingBackward."""
    t = t * 2
    if route:
        return rpc.rpc_sync(route[0], fail_in_backward, (route[1:], t))
    return FailingBackward.apply(t)


def double_grad_of_intermediate(t):
    """(t * 3) * t, with a hook doubling the gradient of the intermediate t * 3."""
    y = t * 3
    y.register_hook(lambda grad: grad * 2)
    return y * t


def hook_param(name):
    """Adds a hook doubling the gradient of PARAMS[name] (see unhook_params)."""
    _param_hooks.append(PARAMS[name].register_hook(lambda grad: grad * 2))


def unhook_params():
    while _param_hooks:
        _param_hooks.pop().remove()


def open_context():
    """Opens a context on this worker: returns its id, current_context_id()
    inside and after the block."""
    with dist_autograd.context() as context_id:
        inside = dist_autograd.current_context_id()
    return context_id, inside, dist_autograd.current_context_id()


def current_contexts(route):
    """current_context_id() on this worker and on each worker of route, in turn."""
    here = dist_autograd.current_context_id()
    if not route:
        return [here]
    return [here, *rpc.rpc_sync(route[0], current_contexts, (route[1:],))]


def rss_bytes():
    """Resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def train_leaves(seed):
    """The leaves of a train step, made from seed."""
    base = torch.arange(6, dtype=torch.float64).reshape(2, 3) / 8
    return [(base + seed).requires_grad_(), (base * (seed % 5 + 1) - 1).requires_grad_()]


def train_forward(call, peers, x, y):
    """A step that goes through each worker of peers and back."""
    u = call(peers[0], torch.mul, x, y)
    v = call(peers[1], step, u + x)
    return (v * y).sum()


def train_step(peers, seed):
    """A parameter-server style step run by this worker: opens a context,
    runs train_forward across peers, runs backward, returns the gradients of
    the leaves."""
    leaves = train_leaves(seed)
    with dist_autograd.context() as context_id:
        loss = train_forward(rpc_call, peers, *leaves)
        dist_autograd.backward(context_id, [loss])
        grads = dist_autograd.get_gradients(context_id)
        return [grads[leaf] for leaf in leaves]


def mul_sin(t1, t2):
    """The Python twin of tests.script_fns.mul_sin."""
    return t1 * torch.sin(t2)


def times_param(x, name):
    return x * PARAMS[name]


def second_half(t):
    """A view of the second half of t (contiguous, sharing its storage)."""
    return t[t.numel() // 2:]


# A parameter server's state, for the copy-semantics tests.
_stored = {}


def store_tensor(t):
    """Keeps t and returns it."""
    _stored["t"] = t
    return t


def stored_sum():
    return _stored["t"].sum()


def scale_stored(factor):
    _stored["t"].mul_(factor)


def drop_stored():
    _stored.clear()


def make_linear():
    torch.manual_seed(0)
    return torch.nn.Linear(2, 3)


def leaf_requiring_grad():
    return torch.ones(2, requires_grad=True)


def reshape_to_dims(ndim):
    return torch.ones([1] * ndim)


def bits8_tensor():
    return torch.zeros(2, dtype=torch.uint8).view(torch.bits8)


def raise_system_exit():
    raise SystemExit(3)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt()



def context_left_open(dst, route):
    """Opens a distributed autograd context here that stays open (as in a
    worker that dies in the middle of an iteration), reaching dst and route
    beyond, and returns once the call through them is done."""
    done = threading.Event()

    def hold():
        with dist_autograd.context():
            rpc.rpc_sync(dst, relay, (route, torch.ones(1, requires_grad=True)))
            done.set()
            threading.Event().wait()  # never leaves the block

    threading.Thread(target=hold, daemon=True).start()
    assert done.wait(30)


def served_spans(ready_path, seconds):
    """Runs a profiler here for a while (creating ready_path once it
    records), recording the requests served meanwhile; returns the names of
    its rpc# events."""
    with torch.profiler.profile() as prof, rpc.profile_serving():
        pathlib.Path(ready_path).touch()
        time.sleep(seconds)
    return sorted({e.name for e in prof.events() if e.name.startswith(("rpc#", "rpc_remote#"))})


def with_unused_call(call, peer, x):
    """x * 3, after a call to peer whose result is dropped."""
    call(peer, torch.mul, x, x)
    return x * 3


class SlowBackward(torch.autograd.Function):
    """The identity, whose backward sleeps for `seconds` first."""

    @staticmethod
    def forward(ctx, x, seconds):
        ctx.seconds = seconds
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.seconds)
        return grad, None


def slow_in_backward(t, seconds):
    return SlowBackward.apply(t * 2, seconds)


def sum_of_ones_on(to, numel):
    """Sends a tensor of numel ones to worker `to` and returns their sum from there."""
    return rpc.rpc_sync(to, torch.sum, (torch.ones(numel),))


def shutdown_here():
    """rpc.shutdown(graceful=False) from the thread serving this call."""
    rpc.shutdown(graceful=False)


def thread_names():
    """The OS names of this process's threads, and of the calling one."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass  # a thread that ended meanwhile
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return sorted(names), f.read().strip()
