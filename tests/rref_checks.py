"""The check that a test leaves no RRef behind: after each test, every
worker's RRef counts (values owned, references held, forks known to owners,
forks awaiting their owner) must be back to zero within RELEASE_DEADLINE.

A test module activates it by importing its fixture:

    from tests.rref_checks import no_rref_left_behind  # noqa: F401
"""

import gc
import time

import pytest

import distgrad.rpc as rpc

# The owner deletes a value within this time of its last reference dying.
RELEASE_DEADLINE = 1.0
COUNTS = ("num_owner_rrefs", "num_user_rrefs", "num_forks", "num_pending_forks")


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
    """{worker name: counts(collect) there} for every worker, asked of all
    at once."""
    futures = {w.name: rpc.rpc_async(w, counts, (collect,)) for w in rpc.get_worker_infos()}
    return {name: future.wait() for name, future in futures.items()}


@pytest.fixture(autouse=True)
def no_rref_left_behind(cluster):
    """Fails a test after which some worker still counts an RRef a second
    later."""
    yield
    # A test's references often die only with the reference cycles of its
    # frames (pytest.raises keeps the exception, whose traceback holds them).
    gc.collect()
    zero = dict.fromkeys(COUNTS, 0)
    start = time.monotonic()
    while True:
        # Collecting takes about 0.1 s: on other workers only if needed.
        elapsed = time.monotonic() - start
        held = all_counts(collect=elapsed > RELEASE_DEADLINE / 4)
        if all(c == zero for c in held.values()):
            return
        if elapsed > RELEASE_DEADLINE:
            pytest.fail(f"{RELEASE_DEADLINE} s after the test, RRef counts are not all zero: {held}")
        time.sleep(0.01)
