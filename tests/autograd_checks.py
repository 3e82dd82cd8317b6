"""Shared by the distributed autograd tests (tests/autograd/): the
check that no test leaves a context behind (run after every test that uses
the cluster, see tests/conftest.py), running a computation across the job
and as a plain local torch.autograd reference, and comparing gradients."""

import threading
import time

import pytest
import torch

import distgrad.autograd as dist_autograd
import distgrad.rpc as rpc
from tests import remote_fns
from tests.checks import ask_every_live_worker

# How long the contexts of a finished test may take to be released everywhere.
RELEASE_DEADLINE = 1.0


def in_fresh_thread(fn, *args, timeout=30.0):
    """fn(*args) on a new thread, where no context is current (so RPCs it
    makes are not recorded in the caller's context); re-raises its error and
    fails if it has not returned after timeout seconds (a hang)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def debug_info(worker):
    """distgrad.autograd.debug_info() of worker (a name)."""
    if worker == rpc.get_worker_info().name:
        return dist_autograd.debug_info()
    return rpc.rpc_sync(worker, dist_autograd.debug_info)


def debug_infos():
    """{worker name: debug_info()} for every live worker, asked from a thread
    without a current context, so that asking creates no context anywhere."""
    return in_fresh_thread(ask_every_live_worker, dist_autograd.debug_info)


def num_contexts():
    return {name: info["num_autograd_contexts"] for name, info in debug_infos().items()}


def wait_for_contexts(expected, deadline=RELEASE_DEADLINE):
    """Polls until every worker holds expected[worker] contexts and runs no
    backward pass; fails describing the difference after deadline seconds."""
    end = time.monotonic() + deadline
    while True:
        infos = debug_infos()
        actual = {name: info["num_autograd_contexts"] for name, info in infos.items()}
        passes = {name: info["num_current_backward_passes"] for name, info in infos.items()}
        # A worker a test killed no longer counts.
        expected = {name: count for name, count in expected.items() if name in actual}
        if actual == expected and not any(passes.values()):
            return
        if time.monotonic() > end:
            pytest.fail(f"{deadline} s after the test: live contexts {actual} (expected {expected}), "
                        f"backward passes under way {passes} (expected none)")
        time.sleep(0.01)


def distributed_gradients(forward, leaves, remote_leaves=()):
    """Runs forward(rpc_call, *leaves) in a context and a distributed backward
    from the roots it returns. Returns the gradients worker0 holds for
    leaves (None for those it holds none for) and, for each (worker, name) of
    remote_leaves, the gradient that worker holds for remote_fns.PARAMS[name].
    Checks that worker0 holds gradients for nothing but leaves and that
    backward left every .grad alone."""
    with dist_autograd.context() as context_id:
        roots = forward(remote_fns.rpc_call, *leaves)
        dist_autograd.backward(context_id, roots)
        held = dist_autograd.get_gradients(context_id)
        remote = [rpc.rpc_sync(worker, remote_fns.param_gradient, (context_id, name))
                  for worker, name in remote_leaves]
    local = [next((g for leaf, g in held.items() if leaf is t), None) for t in leaves]
    assert len(held) == sum(g is not None for g in local), \
        f"worker0 holds gradients for tensors other than the leaves: {list(held)}"
    assert all(t.grad is None for t in leaves), "distributed backward wrote to .grad"
    return local, remote


def reference_gradients(forward, leaves, remote_leaves=()):
    """The same computation with plain torch.autograd in this process: the
    gradients of the sum of the roots for leaves, then for remote_leaves
    (None where a leaf does not take part)."""
    inputs = list(leaves) + [remote_fns.PARAMS[name] for _, name in remote_leaves]
    roots = forward(remote_fns.local_call, *leaves)
    grads = torch.autograd.grad(roots, inputs, allow_unused=True)
    return list(grads[:len(leaves)]), list(grads[len(leaves):])


def assert_gradients(actual, expected, exact=True):
    """actual and expected are lists of gradients or None. exact compares
    bit for bit; otherwise with torch.testing.assert_close (for graphs whose
    gradient sums may be added in another order than the local engine's)."""
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None, f"gradient {i}: expected none, got {a}"
            continue
        assert a is not None, f"gradient {i}: expected {e}, got none"
        assert a.dtype == e.dtype and a.shape == e.shape, (i, a.dtype, e.dtype, a.shape, e.shape)
        if exact:
            assert torch.equal(a, e), f"gradient {i}: {a} != {e}"
        else:
            torch.testing.assert_close(a, e, msg=lambda m, i=i: f"gradient {i}: {m}")


def check_against_reference(forward, make_leaves, remote_leaves=(), exact=True):
    """Runs forward across the job and locally, each on fresh leaves from
    make_leaves(), and compares the gradients; returns the distributed ones
    (worker0's, then remote_leaves')."""
    local, remote = distributed_gradients(forward, make_leaves(), remote_leaves)
    expected_local, expected_remote = reference_gradients(forward, make_leaves(), remote_leaves)
    assert_gradients(local, expected_local, exact)
    assert_gradients(remote, expected_remote, exact)
    return local, remote
