"""The check that a test leaves no RRef behind: after each test, every
worker's RRef counts (values owned, references held, forks known to owners,
forks awaiting their owner) must be back to zero within RELEASE_DEADLINE.

A test module activates it by importing its fixture:

    from tests.rref_counts import no_rref_left_behind  # noqa: F401
"""

import gc
import time

import pytest

import distgrad.rpc as rpc

# The owner deletes a value within this time of its last reference dying.
RELEASE_DEADLINE = 1.0
COUNTS = ("num_owner_rrefs", "num_user_rrefs", "num_forks", "num_pending_forks")


def collected_counts():
    """This worker's RRef counts after a garbage collection (a reference kept
    alive only by a reference cycle is dead for the test)."""
    gc.collect()
    info = rpc.debug_info()
    return {key: info[key] for key in COUNTS}


def all_counts():
    """{worker name: collected_counts() there} for every worker, asked of
    all at once (a garbage collection takes a while)."""
    futures = {w.name: rpc.rpc_async(w, collected_counts) for w in rpc.get_worker_infos()}
    return {name: future.wait() for name, future in futures.items()}


@pytest.fixture(autouse=True)
def no_rref_left_behind(cluster):
    """Fails a test after which some worker still counts an RRef a second
    later."""
    yield
    zero = dict.fromkeys(COUNTS, 0)
    deadline = time.monotonic() + RELEASE_DEADLINE
    while True:
        counts = all_counts()
        if all(c == zero for c in counts.values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{RELEASE_DEADLINE} s after the test, RRef counts are not all zero: {counts}")
        time.sleep(0.01)
