"""rpc_async: the torch.futures.Future it returns, for every kind of func."""

import threading
import time

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.checks import assert_same, remote_message

A = torch.arange(4, dtype=torch.float64)
B = torch.tensor([1.5, -2.0, 0.0, 8.0], dtype=torch.float64)

# (func, args, kwargs, expected) for each kind of func.
CALLS = {
    "builtin": (torch.add, (A, B), {"alpha": 3}, A + 3 * B),
    "builtin-tuple": (torch.max, (B,), {"dim": 0}, (torch.tensor(8.0, dtype=torch.float64), torch.tensor(3))),
    "script": (script_fns.local_add, (A, B), None, A + B),
    "script-by-name": ("tests.script_fns.local_add", (A, B), None, A + B),
    "python": (remote_fns.combine, (A, B), {"tag": "t"}, None),  # expected depends on dst
}


def expected_for(kind, dst):
    func, args, kwargs, expected = CALLS[kind]
    if kind == "python":
        return remote_fns.combine(*args, **kwargs) | {"where": dst}
    return expected


@pytest.mark.parametrize("dst", ["worker1", "worker0"])
@pytest.mark.parametrize("kind", CALLS)
def test_wait(cluster, kind, dst):
    func, args, kwargs, _ = CALLS[kind]
    future = rpc.rpc_async(dst, func, args, kwargs)
    assert isinstance(future, torch.futures.Future)
    assert_same(future.wait(), expected_for(kind, dst))
    assert future.done()
    assert_same(future.value(), expected_for(kind, dst))


@pytest.mark.parametrize("kind", CALLS)
def test_then(cluster, kind):
    func, args, kwargs, _ = CALLS[kind]
    chained = rpc.rpc_async("worker2", func, args, kwargs).then(lambda f: ("seen", f.wait()))
    assert_same(chained.wait(), ("seen", expected_for(kind, "worker2")))


def test_wait_all_across_workers_and_kinds(cluster):
    futures, expected = [], []
    for dst in ["worker0", "worker1", "worker2"]:
        for kind in CALLS:
            func, args, kwargs, _ = CALLS[kind]
            futures.append(rpc.rpc_async(dst, func, args, kwargs))
            expected.append(expected_for(kind, dst))
    assert_same(torch.futures.wait_all(futures), expected)


def test_collect_all(cluster):
    futures = [rpc.rpc_async(f"worker{r}", torch.mul, (A, r)) for r in range(3)]
    done = torch.futures.collect_all(futures).wait()
    assert [f.wait().tolist() for f in done] == [(A * r).tolist() for r in range(3)]


def test_returns_before_the_call_completes(cluster):
    start = time.monotonic()
    future = rpc.rpc_async("worker1", remote_fns.sleep_and_return, (1.0, "slow"))
    assert time.monotonic() - start < 0.5
    assert not future.done()
    assert future.wait() == "slow"


@pytest.mark.parametrize("dst", ["worker1", "worker0"])
def test_remote_error_raised_by_wait(cluster, dst):
    future = rpc.rpc_async(dst, remote_fns.raise_value_error, ("async failure",))
    with pytest.raises(ValueError) as excinfo:
        future.wait()
    assert remote_message(excinfo).startswith("async failure\n")
    assert f"(ValueError raised on worker '{dst}')" in remote_message(excinfo)


def test_then_sees_the_remote_error(cluster):
    def on_done(future):
        try:
            future.wait()
        except KeyError as error:
            return "KeyError", error.args[0].splitlines()[0], error.args[0].splitlines()[-1]
        return "no error"

    chained = rpc.rpc_async("worker1", remote_fns.raise_key_error, ("absent",)).then(on_done)
    assert chained.wait() == ("KeyError", "'absent'", "(KeyError raised on worker 'worker1')")


def test_error_in_then_callback_fails_the_chained_future(cluster):
    chained = rpc.rpc_async("worker1", remote_fns.raise_value_error, ("nope",)).then(lambda f: f.wait())
    # torch.futures reports an exception escaping a callback as a RuntimeError.
    with pytest.raises(RuntimeError) as excinfo:
        chained.wait()
    assert "running the callback: ValueError: nope" in str(excinfo.value)
    assert "(ValueError raised on worker 'worker1')" in str(excinfo.value)


def test_then_callbacks_that_wait_on_other_calls_do_not_starve_the_runtime(cluster):
    # More blocking callbacks than the pool has threads (16): each waits for
    # another call, whose completion must still find a thread.
    t = torch.ones(2)

    def wait_for_another(fut):
        return fut.wait() + rpc.rpc_async("worker1", torch.add, (t, t)).wait()

    futures = [rpc.rpc_async("worker1", remote_fns.sleep_and_return, (0.05, t)).then(wait_for_another)
               for _ in range(40)]
    results = torch.futures.wait_all(futures)
    assert all(torch.equal(r, torch.full((2,), 3.0)) for r in results)
    assert_same(rpc.rpc_sync("worker1", torch.add, (t, t)), t + t)


def _os_thread_name():
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().strip()


def test_a_reply_that_comes_while_wait_reads_completes_the_future_on_the_waiting_thread(cluster):
    # wait() reads the call's connection itself: a reply that comes while it
    # does completes the future, callbacks included, on the waiting thread (no
    # callback thread woken, then the waiter); one that came before is
    # completed on the callback pool. A builtin reply takes tens of
    # microseconds: some of 200 calls must take the first path, and no
    # callback may run on a runtime thread (a reader or the pool).
    main = threading.get_native_id()
    ran_on = []
    chained = []
    for _ in range(200):
        future = rpc.rpc_async("worker1", torch.add, (A, B))
        chained.append(future.then(lambda f: ran_on.append(
            "waiter" if threading.get_native_id() == main else _os_thread_name())))
        assert_same(future.wait(), A + B)
    torch.futures.wait_all(chained)
    assert len(ran_on) == 200
    assert "waiter" in ran_on
    assert set(ran_on) <= {"waiter", "distgrad-cb"}


def test_an_error_read_by_wait_fails_the_future(cluster):
    for _ in range(20):
        future = rpc.rpc_async("worker1", torch.add, (A, torch.ones(3)))
        with pytest.raises(RuntimeError, match="must match the size"):
            future.wait()
        assert future.done()


def test_two_threads_waiting_for_one_future_both_get_its_value(cluster):
    future = rpc.rpc_async("worker1", remote_fns.sleep_and_return, (0.2, "value"))
    results = []
    other = threading.Thread(target=lambda: results.append(future.wait()))
    other.start()
    results.append(future.wait())
    other.join(timeout=30)
    assert results == ["value", "value"]
