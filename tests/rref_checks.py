"""The check that a test leaves no RRef behind: after each test, every
worker's RRef counts (values owned, references held, forks known to owners,
forks awaiting their owner, and the native optimizers such values keep
registered) must be back to at most what they were before it within
RELEASE_DEADLINE.

It runs after every test that uses the cluster (see tests/conftest.py).
"""

import gc
import time

import pytest

import distgrad.rpc as rpc
from tests.checks import ask_every_live_worker

# The owner deletes a value within this time of its last reference dying.
RELEASE_DEADLINE = 1.0
COUNTS = ("num_owner_rrefs", "num_user_rrefs", "num_forks", "num_pending_forks", "num_native_optimizers")


def counts(collect=True):
    """This worker's RRef counts, after a garbage collection if collect (a
    reference kept alive only by a reference cycle is dead for the test)."""
    if collect:
        gc.collect()
    info = rpc.debug_info()
    return {key: info[key] for key in COUNTS}


def rref_counts(worker):
    """counts() on worker."""
    return rpc.rpc_sync(worker, counts)


def all_counts(collect):
    """{worker name: counts(collect) there} for every live worker, asked of
    all at once."""
    return ask_every_live_worker(counts, collect)


def wait_for_rref_counts(expected):
    """Fails the test if some live worker's RRef counts are not back to at
    most expected[worker] RELEASE_DEADLINE after it."""
    # A test's references often die only with the reference cycles of its
    # frames (pytest.raises keeps the exception, whose traceback holds them).
    gc.collect()
    start = time.monotonic()
    while True:
        # Collecting takes about 0.1 s: on other workers only if needed.
        elapsed = time.monotonic() - start
        held = all_counts(collect=elapsed > RELEASE_DEADLINE / 4)
        expected = {name: c for name, c in expected.items() if name in held}
        # References that were garbage when the test began may be gone since.
        if all(held[name][key] <= count for name, counts in expected.items() for key, count in counts.items()):
            return
        if elapsed > RELEASE_DEADLINE:
            pytest.fail(f"{RELEASE_DEADLINE} s after the test, RRef counts are {held}, expected {expected}")
        time.sleep(0.01)
