"""Python functions the tests run on other workers. They travel pickled by
reference, so they must live in a module every worker can import."""

import pathlib
import pickle
import time

import torch

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


def listening_address(rank):
    """The "host:port" worker rank accepts RPC connections on, as published
    at the rendezvous."""
    _, address = pickle.loads(rpc._job.rendezvous.store.get(f"distgrad/worker/{rank}"))
    return address


def job_secret():
    return rpc._job.rendezvous.store.get("distgrad/secret").decode()
