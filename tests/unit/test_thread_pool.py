"""The RPC thread pool (rpc/thread_pool.h): which thread a task wakes, and
what counts as computing for the readers' polling."""

from distgrad import _unit


def test_a_task_wakes_the_thread_that_went_idle_last():
    # One task at a time: each finds the thread that ran the previous one
    # idle on top, and that thread runs it (before, they went round all).
    pool = _unit.ThreadPool(4)
    try:
        threads = _unit.threads_of_sequential_tasks(pool, 50)
    finally:
        pool.stop()
    assert len(threads) == 50
    assert len(set(threads)) == 1, f"tasks ran on {len(set(threads))} threads"


def test_a_task_blocked_in_a_wait_scope_is_busy_but_not_computing():
    pool = _unit.ThreadPool(2)
    try:
        counts = _unit.counts_around_wait_scope(pool)
    finally:
        pool.stop()
    # (busy, computing): in one scope, in a nested one (counted once), after both.
    assert counts == [(1, 0), (1, 0), (0, 0)]
