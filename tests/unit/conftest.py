"""Unit tests: each drives one C++ unit through distgrad._unit, in this
process, with no other worker and no socket. The whole folder runs in
seconds; see docs/testing.md."""

import hashlib
import hmac

import pytest

from distgrad import _unit


def make_auth(key):
    """An Authenticator over HMAC-SHA256 with key, as the job key is used."""
    return _unit.Authenticator(
        mac=lambda message: hmac.new(key, message, hashlib.sha256).digest(),
        verify=lambda message, tag: hmac.compare_digest(
            hmac.new(key, message, hashlib.sha256).digest(), tag),
    )


@pytest.fixture
def auth():
    return make_auth(b"the job key")


@pytest.fixture
def arena():
    """A 1 MiB arena of this process (its first page holds the token)."""
    arena = _unit.LocalArena.create(1 << 20)
    if arena is None:
        pytest.skip("no memfd shared memory here")
    return arena


@pytest.fixture(autouse=True)
def no_pass_left_running():
    """A pass whose task never completes counts as running in this process
    for good, and the multi-process tests' leak check would see it."""
    before = _unit.BackwardPass.num_running()
    yield
    assert _unit.BackwardPass.num_running() == before, "a backward pass task did not complete"
