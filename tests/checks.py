"""Assertions and polling shared by the tests."""

import threading
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


def run_in_threads(body, num_threads, timeout=60.0):
    """Runs body(index) on num_threads threads started together; fails if
    one is still running after timeout seconds and re-raises the first
    failure."""
    start = threading.Barrier(num_threads)
    errors = [None] * num_threads

    def target(index):
        try:
            start.wait()
            body(index)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors[index] = error

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(num_threads)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), f"a thread is still running after {timeout} s"
    for error in errors:
        if error is not None:
            raise error


def ask_every_live_worker(fn, *args):
    """{worker name: fn(*args) run there} for every worker of the job, asked
    all at once; a worker that has been lost (a test killed it) is left out."""
    import distgrad
    import distgrad.rpc as rpc

    futures = {w.name: rpc.rpc_async(w, fn, args) for w in rpc.get_worker_infos()}
    answers = {}
    for name, future in futures.items():
        try:
            answers[name] = future.wait()
        except distgrad.errors.DistNetworkError:
            pass
    return answers


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_group_exists(pgid):
    import os

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_program(command, timeout, **popen_args):
    """(exit code, output) of command (stdout and stderr together), run in a
    process group of its own; fails the test if it outlives timeout seconds,
    or if any of its processes is still there 10 s after it exited."""
    import os
    import signal
    import subprocess

    import pytest

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen_args)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{command} did not finish within {timeout} s; its output:\n{output}")
    deadline = time.monotonic() + 10.0
    while _process_group_exists(proc.pid):
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"processes of {command} were still running 10 s after it exited")
        time.sleep(0.05)
    return proc.returncode, output


# distgrad's private state ------------------------------------------------------
#
# What a few tests must read or reset that distgrad keeps private on purpose:
# no user should get the job key or the rendezvous store of a job, and the
# others are internals of init_rpc. The tests reach them here only, so that a
# change inside distgrad has one place to follow.


def job_rendezvous():
    """The rendezvous of this process's job (distgrad._rendezvous.Rendezvous),
    whose store the security tests read and write as a stranger would."""
    import distgrad.rpc.api

    return distgrad.rpc.api._job.rendezvous


def job_key():
    """The bytes of this job's key: the handshake tests compute MACs with
    Python's hmac, to check a worker's and to make the proofs only a worker
    of the job could make."""
    return job_rendezvous().key._key


def listening_address(rank):
    """The "host:port" worker rank accepts RPC connections on, as published
    at the rendezvous (read through this worker's rendezvous store)."""
    return job_rendezvous().exchange_addresses()[rank]


def warn_again_of_a_loopback_address(monkeypatch):
    """init_rpc warns once per process that the address it advertises is a
    loopback one though the store is on another host; for this test it warns
    again."""
    import distgrad.rpc.api

    monkeypatch.setattr(distgrad.rpc.api, "_warned_loopback", False)


def warn_again_of_a_missing_token(monkeypatch):
    """init_rpc warns once per process that DISTGRAD_AUTH_TOKEN is not set
    though other hosts reach the store; for this test it warns again."""
    from distgrad import _job_key

    monkeypatch.setattr(_job_key, "_warned", False)
