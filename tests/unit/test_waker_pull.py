"""The rule that pulls the reader that wakes a waiting caller onto the
caller's core (common/waker_pull.h), and the move itself."""

import os

import pytest

from distgrad import _unit

READER = 4242  # a thread id; the rule only compares cores


def test_two_wakeups_in_a_row_from_another_core_pull_the_reader():
    rule = _unit.WakerPullRule()
    assert not rule.should_pull(READER, 0, 1, 0.0)
    assert rule.should_pull(READER, 0, 1, 0.1)


def test_a_wakeup_from_the_waiters_own_core_starts_the_count_again():
    rule = _unit.WakerPullRule()
    assert not rule.should_pull(READER, 0, 1, 0.0)
    assert not rule.should_pull(READER, 1, 1, 0.1)
    assert not rule.should_pull(READER, 0, 1, 0.2)
    assert rule.should_pull(READER, 0, 1, 0.3)


def test_a_wakeup_by_no_reader_pulls_nothing():
    rule = _unit.WakerPullRule()
    # Completed by another kind of thread (tid 0), or a core not known.
    assert not rule.should_pull(0, 0, 1, 0.0)
    assert not rule.should_pull(0, 0, 1, 0.1)
    assert not rule.should_pull(READER, -1, 1, 0.2)
    assert not rule.should_pull(READER, -1, 1, 0.3)


def test_a_reader_that_moves_away_again_is_pulled_at_most_every_10_ms():
    rule = _unit.WakerPullRule()
    assert not rule.should_pull(READER, 0, 1, 0.0)
    assert rule.should_pull(READER, 0, 1, 0.1)
    pulled = [rule.should_pull(READER, 0, 1, t / 10) for t in range(2, 101)]
    assert not any(pulled), "pulled again within 10 ms"
    assert rule.should_pull(READER, 0, 1, 10.2)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="moving a thread takes two cores")
def test_the_pulled_thread_runs_on_the_pullers_core_and_keeps_its_mask():
    here, pulled_to, seen_there, same_mask = _unit.pull_spinning_thread()
    assert pulled_to == here
    assert seen_there, f"the thread never ran on core {here} after the pull"
    assert same_mask, "the thread's affinity mask changed"


def test_a_thread_of_another_process_is_not_moved():
    # The parent's main thread: a reader's id, once it has ended, may be
    # anyone's.
    parent = os.getppid()
    before = os.sched_getaffinity(parent)
    assert _unit.pull_onto_this_core(parent) == -1
    assert os.sched_getaffinity(parent) == before
