"""Assertions and polling shared by the tests."""

import time

import torch


def assert_same(actual, expected):
    """Exact equality of values that may nest tensors in tuples, lists and
    dicts; a tensor must also match in dtype and shape. A named tuple such as
    torch.return_types.max matches the plain tuple of its fields."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"expected a tensor, got {actual!r}"
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
        assert actual.shape == expected.shape, (actual.shape, expected.shape)
        assert torch.equal(actual, expected), f"{actual} != {expected}"
    elif isinstance(expected, (tuple, list)):
        assert type(actual) is (tuple if isinstance(expected, tuple) else list), \
            f"expected a {type(expected).__name__}, got {actual!r}"
        assert len(actual) == len(expected), (actual, expected)
        for a, e in zip(actual, expected):
            assert_same(a, e)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (actual, expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    else:
        assert type(actual) is type(expected) and actual == expected, (actual, expected)


def wait_for(condition, timeout, what):
    """Polls condition() until it is true; fails naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


def remote_message(excinfo):
    """The full message of an exception raised by an RPC (its first argument,
    since str() of a KeyError is the repr of its message)."""
    return excinfo.value.args[0]
