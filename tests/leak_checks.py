"""What every test that uses a module's cluster must leave as it found it,
on every live worker: the same distributed autograd contexts and no backward
pass under way, no more RRefs counted, and no more calls pending or being
served (none, unless a module's fixture holds some) than before it. tests/conftest.py runs
it around each such test, once the test's own fixtures are set up, so a new
test module cannot forget it."""

import time

import pytest

import distgrad.rpc as rpc
from tests import autograd_checks, rref_checks
from tests.checks import ask_every_live_worker

# How long calls a test started may take to end after it.
CALLS_DEADLINE = 2.0


def _calls_in_flight():
    """{worker: (calls pending there, calls it is serving)} for every live
    worker; a worker's answer to this question is not counted."""
    here = rpc.debug_info()
    me = rpc.get_worker_info().name
    counts = {me: (here["num_pending_calls"], here["num_active_requests"])}
    for name, info in ask_every_live_worker(rpc.debug_info).items():
        if name != me:
            counts[name] = (info["num_pending_calls"], info["num_active_requests"] - 1)
    return counts


def wait_for_calls(expected):
    end = time.monotonic() + CALLS_DEADLINE
    while True:
        counts = autograd_checks.in_fresh_thread(_calls_in_flight)
        expected = {name: c for name, c in expected.items() if name in counts}
        # Work still ending when the test began may have ended since.
        if all(counts[name][0] <= pending and counts[name][1] <= served
               for name, (pending, served) in expected.items()):
            return
        if time.monotonic() > end:
            pytest.fail(f"{CALLS_DEADLINE} s after the test, calls (pending, being served) are {counts}, "
                        f"expected {expected}")
        time.sleep(0.01)


def before_test():
    return (autograd_checks.num_contexts(), rref_checks.all_counts(collect=False),
            autograd_checks.in_fresh_thread(_calls_in_flight))


def after_test(before):
    contexts, rrefs, calls = before
    autograd_checks.wait_for_contexts(contexts)
    rref_checks.wait_for_rref_counts(rrefs)
    wait_for_calls(calls)
