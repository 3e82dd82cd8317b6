"""The check that no test leaves an RRef behind on any worker: every
worker's RRef counts (values owned, references held, forks known to owners,
forks awaiting their owner) must be back to what they were before the test
within RELEASE_DEADLINE.

A test module activates it by importing its fixture:

    from tests.rref_checks import no_rref_left_behind  # noqa: F401
"""

import gc
import time

import pytest

import distgrad.rpc as rpc
from tests.autograd_checks import in_fresh_thread

# The owner deletes a value within this time of its last reference dying.
RELEASE_DEADLINE = 1.0
COUNTS = ("num_owner_rrefs", "num_user_rrefs", "num_forks", "num_pending_forks")


def rref_counts(worker):
    """worker's RRef counts, after a garbage collection there (a reference
    kept alive only by a cycle is dead for the test)."""
    return rpc.rpc_sync(worker, collected_counts)


def collected_counts():
    gc.collect()
    info = rpc.debug_info()
    return {key: info[key] for key in COUNTS}


def all_counts():
    names = [w.name for w in rpc.get_worker_infos()]
    return in_fresh_thread(lambda: {name: rref_counts(name) for name in names})


def wait_for_rref_counts(expected, deadline=RELEASE_DEADLINE):
    """Polls every worker until its counts equal expected[worker]; fails with
    the difference after deadline seconds."""
    end = time.monotonic() + deadline
    while True:
        actual = all_counts()
        if actual == expected:
            return
        if time.monotonic() > end:
            pytest.fail(f"{deadline} s after the test, RRef counts are {actual}, expected {expected}")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_rref_left_behind(cluster):
    before = all_counts()
    yield
    wait_for_rref_counts(before)
