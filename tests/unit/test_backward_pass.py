"""One worker's share of a distributed backward pass (autograd/backward_pass.h),
on small local graphs with send and receive nodes. The pass's messages go to
fake peers that the test answers, and the work it offloads runs when the
test says."""

import gc

import pytest
import torch

from distgrad import _unit
from distgrad.errors import DistError, DistNetworkError, DistTimeoutError

CONTEXT_ID = (1 << 48) + 1
PASS_ID = (0 << 48) + 100


@pytest.fixture
def context():
    return _unit.Context(CONTEXT_ID)


def grad_of(context, leaf):
    found = [g for t, g in context.gradients() if t is leaf]
    return found[0] if found else None


def parsed(task):
    return {worker: (stamp, sorted(undecided))
            for worker, stamp, undecided in _unit.parse_reports(task.result())}


def finish(p):
    """Runs what the pass offloaded, as the pool would."""
    p.run_offloaded()


class Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class Boom(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise ValueError("boom in backward")


# On the initiating worker.

def test_gradients_cross_a_receive_node(context):
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    r = torch.tensor([4.0, 5.0, 6.0])
    context.record_recv([r], peer=1, message_id=12)
    loss = (r * x).sum()
    p = _unit.BackwardPass(context, PASS_ID, roots=[loss])
    running = _unit.BackwardPass.num_running()
    task = p.run_from_roots()
    [sent] = p.sent()
    assert (sent["peer"], sent["kind"], sent["message_id"]) == (1, _unit.GRADIENTS, 12)
    assert (sent["context_id"], sent["pass_id"], sent["retain_graph"]) == (CONTEXT_ID, PASS_ID, False)
    torch.testing.assert_close(sent["grads"], [x.detach()])
    torch.testing.assert_close(grad_of(context, x), r)
    assert x.grad is None  # leaf gradients go to the context
    # Complete only once the peer answered.
    assert not task.done() and p.running()
    assert _unit.BackwardPass.num_running() == running + 1
    p.answer(0, _unit.encode_reports([(1, 3, [])]))
    assert task.done() and not p.running()
    assert parsed(task) == {0: (1, []), 1: (3, [])}
    assert _unit.BackwardPass.num_running() == running


def test_unused_outputs_of_a_message_get_zeros(context):
    used, unused = torch.ones(2), torch.ones(3, 2)
    context.record_recv([used, unused], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, roots=[(used * 5).sum()])
    task = p.run_from_roots()
    torch.testing.assert_close(p.sent()[0]["grads"], [torch.full((2,), 5.0), torch.zeros(3, 2)])
    p.answer(0)
    assert task.done()


def test_send_nodes_wait_for_their_peers(context):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    context.record_send([x * 2], peer=1, message_id=11)
    p = _unit.BackwardPass(context, PASS_ID, roots=[(x * 3).sum()])
    task = p.run_from_roots()
    # Its own part is done; x still waits for what comes through message 11.
    assert task.done() and p.sent() == []
    assert parsed(task) == {0: (1, [(1, 11)])}
    assert grad_of(context, x) is None
    assert p.report()[2] == [(1, 11)]
    peer_task = p.run_from_send_node(11, grads=[torch.ones(2)])
    finish(p)
    assert peer_task.done() and parsed(peer_task) == {0: (3, [])}
    torch.testing.assert_close(grad_of(context, x), torch.full((2,), 5.0))
    assert not context.has_send_node(11)  # freed: retain_graph is False


def test_report_stamps_increase(context):
    context.record_send([torch.ones(1, requires_grad=True) * 2], peer=2, message_id=7)
    p = _unit.BackwardPass(context, PASS_ID, rank=3)
    stamps = [p.report()[1] for _ in range(3)]
    assert stamps == sorted(set(stamps))
    assert p.report()[0] == 3


def test_another_pass_cannot_start_while_one_runs(context):
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, roots=[r.sum()])
    p.run_from_roots()
    with pytest.raises(DistError, match=f"another distributed backward pass is still running in context {CONTEXT_ID}"):
        _unit.BackwardPass(context, PASS_ID + 1, roots=[r.sum()])
    p.answer(0)
    _unit.BackwardPass(context, PASS_ID + 1)


# On a worker the pass reaches through its send nodes.

def peer_graph(context):
    """worker1 received x (message 11 from worker0), sent back y = x * w
    (message 12), and received r (message 13) that only z uses."""
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    x = torch.tensor([5.0, 7.0])
    context.record_recv([x], peer=0, message_id=11)
    y = x * w
    context.record_send([y], peer=0, message_id=12)
    r = torch.ones(2)
    context.record_recv([r], peer=0, message_id=13)
    z = r * w
    return w, x, r, z


@pytest.mark.parametrize("graph_of_13", ["kept", "freed"])
def test_unreachable_receive_nodes_are_declared_absent(context, graph_of_13):
    w, x, r, z = peer_graph(context)
    if graph_of_13 == "freed":
        del r, z
        gc.collect()
    p = _unit.BackwardPass(context, PASS_ID, rank=1, worker="worker1")
    task = p.run_from_send_node(12, grads=[torch.ones(2)])
    finish(p)
    sent = p.sent()
    assert [(s["peer"], s["kind"], s["message_id"]) for s in sent] == [
        (0, _unit.ABSENT, 13), (0, _unit.GRADIENTS, 11)]
    assert sent[0]["grads"] == []
    torch.testing.assert_close(sent[1]["grads"], [w.detach()])
    torch.testing.assert_close(grad_of(context, w), x)
    assert not task.done()
    p.answer(1, _unit.encode_reports([(0, 9, [])]))
    assert not task.done()
    p.answer(0)
    assert parsed(task) == {1: (1, []), 0: (9, [])}


def test_absent_news_propagates_to_receive_nodes(context):
    """worker1 received r from worker2 (message 21) and sent s = r * w to
    worker0 (message 22); the roots do not use s."""
    w = torch.ones(3, requires_grad=True)
    r = torch.ones(3)
    context.record_recv([r], peer=2, message_id=21)
    context.record_send([r * w], peer=0, message_id=22)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(22, absent=True)
    finish(p)
    assert [(s["peer"], s["kind"], s["message_id"]) for s in p.sent()] == [(2, _unit.ABSENT, 21)]
    assert context.gradients() == []  # w's gradient node did not run
    p.answer(0)
    assert task.done() and parsed(task) == {1: (1, [])}


def test_a_node_runs_with_what_arrived_once_the_rest_is_absent(context):
    w = torch.ones(2, requires_grad=True)
    context.record_send([w * 2], peer=0, message_id=31)
    context.record_send([w * 3], peer=2, message_id=32)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    first = p.run_from_send_node(31, grads=[torch.ones(2)])
    finish(p)
    assert first.done() and grad_of(context, w) is None
    assert parsed(first) == {1: (1, [(2, 32)])}
    second = p.run_from_send_node(32, absent=True)
    finish(p)
    assert second.done() and parsed(second) == {1: (2, [])}
    torch.testing.assert_close(grad_of(context, w), torch.full((2,), 2.0))


def test_absent_news_for_a_send_node_not_held(context):
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(99, absent=True)
    assert task.done() and parsed(task) == {1: (1, [])}


def test_join_declares_what_the_pass_cannot_reach(context):
    context.record_recv([torch.ones(2)], peer=0, message_id=51)  # its graph is freed at once
    context.record_send([torch.ones(2, requires_grad=True) * 2], peer=3, message_id=52)
    p = _unit.BackwardPass(context, PASS_ID, rank=2)
    task = p.run_join()
    assert [(s["peer"], s["kind"], s["message_id"]) for s in p.sent()] == [(0, _unit.ABSENT, 51)]
    p.answer(0)
    assert parsed(task) == {2: (1, [(3, 52)])}
    # Only the first task declares them.
    again = p.run_join()
    assert again.done() and len(p.sent()) == 1


@pytest.mark.parametrize("user_code", ["function", "hook"])
def test_user_code_is_offloaded_from_the_reader(context, user_code):
    w = torch.ones(2, requires_grad=True)
    if user_code == "function":
        sent = Double.apply(w)
        expected = 2.0
    else:
        sent = w * 2
        sent.register_hook(lambda grad: grad * 10)
        expected = 20.0
    context.record_send([sent], peer=0, message_id=41)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(41, grads=[torch.ones(2)])
    assert not task.done() and p.pending_offloads() >= 1
    assert p.run_offloaded() >= 1
    assert task.done()
    torch.testing.assert_close(grad_of(context, w), torch.full((2,), expected))


@torch.jit.script
def scripted_shard(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.relu(torch.addmm(b, x, w))


def test_the_autodiff_node_of_a_scripted_function_runs_on_the_reader():
    x = torch.ones(2, 3)
    w = torch.full((3, 2), 0.5, requires_grad=True)
    b = torch.full((2,), -1.0, requires_grad=True)
    # The profiling executor differentiates from the second run, and its
    # gradient graph is optimized in its first runs (past the reader's budget).
    for _ in range(3):
        scripted_shard(x, w, b).sum().backward()
    w.grad = b.grad = None
    # A pass that outlasts the reader's 200 µs budget is offloaded whatever
    # its nodes (a slow machine, a sanitizer build): the node counts as
    # builtin if some pass ends on the reader; one that does not never would.
    for attempt in range(5):
        context = _unit.Context(CONTEXT_ID + 1 + attempt)
        sent = scripted_shard(x, w, b)
        assert "DifferentiableGraphBackward" in sent.grad_fn.name()
        context.record_send([sent], peer=0, message_id=42)
        p = _unit.BackwardPass(context, PASS_ID, rank=1)
        task = p.run_from_send_node(42, grads=[torch.ones(2, 2)])
        on_the_reader = task.done() and p.pending_offloads() == 0
        finish(p)
        # relu(1.5 - 1) passes the gradient: dw = x^T @ ones, db = column sums.
        torch.testing.assert_close(grad_of(context, w), torch.full((3, 2), 2.0))
        torch.testing.assert_close(grad_of(context, b), torch.full((2,), 2.0))
        if on_the_reader:
            return
    pytest.fail("every pass through the autodiff node was offloaded to the pool")


# Messages for the worker a task answers travel in its answer.

def received_and_returned(context, requester=0):
    """This worker (rank 1) received x from requester in message 5 and
    returned 3 * x to it in message 11."""
    x = torch.ones(2)
    context.record_recv([x], peer=requester, message_id=5)
    context.record_send([x * 3], peer=requester, message_id=11)


def test_a_message_for_the_requester_travels_in_the_answer(context):
    received_and_returned(context)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(11, grads=[torch.full((2,), 2.0)], src=0)
    assert p.sent() == []
    assert task.done() and parsed(task) == {1: (1, [])}
    [(kind, message_id, grads)] = task.carried()
    assert (kind, message_id) == (_unit.GRADIENTS, 5)
    torch.testing.assert_close(grads, [torch.full((2,), 6.0)])


def test_a_message_for_another_worker_is_sent_and_awaited(context):
    received_and_returned(context)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(11, grads=[torch.full((2,), 2.0)], src=2)
    [sent] = p.sent()
    assert (sent["peer"], sent["message_id"]) == (0, 5)
    assert not task.done()
    p.answer(0)
    assert task.done() and task.carried() == []


def test_messages_carried_in_an_answer_run_before_the_task_completes(context):
    # The initiator sent x in message 5 and received r = f(x) in message 12.
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    context.record_send([x], peer=1, message_id=5)
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, roots=[(r * 4).sum()])
    task = p.run_from_roots()
    assert not task.done() and grad_of(context, x) is None
    p.answer(0, _unit.encode_reports([(1, 3, [])]),
             carried=[(_unit.GRADIENTS, 5, [torch.full((2,), 7.0)])])
    finish(p)
    assert task.done() and task.carried() == []
    torch.testing.assert_close(grad_of(context, x), torch.full((2,), 7.0))
    # The carried message's task reported too (before the task's own, later
    # report): nothing is left undecided.
    reports = sorted(_unit.parse_reports(task.result()))
    assert reports == [(0, 1, []), (0, 2, []), (1, 3, [])]
    assert not context.has_send_node(5) and not p.running()


def test_carried_messages_chain_back_to_the_requester(context):
    # worker1 received x from worker0 (message 5), passed 2 * x on to
    # worker2 (message 21), got z back (message 22) and returned z to
    # worker0 (message 11): the chain's way back rides on the answers.
    x = torch.ones(2)
    context.record_recv([x], peer=0, message_id=5)
    context.record_send([x * 2], peer=2, message_id=21)
    z = torch.ones(2)
    context.record_recv([z], peer=2, message_id=22)
    context.record_send([z * 1], peer=0, message_id=11)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(11, grads=[torch.full((2,), 3.0)], src=0)
    [sent] = p.sent()
    assert (sent["peer"], sent["message_id"]) == (2, 22)
    p.answer(0, carried=[(_unit.GRADIENTS, 21, [torch.full((2,), 5.0)])])
    finish(p)
    assert task.done() and [s["peer"] for s in p.sent()] == [2]
    [(kind, message_id, grads)] = task.carried()
    assert (kind, message_id) == (_unit.GRADIENTS, 5)
    torch.testing.assert_close(grads, [torch.full((2,), 10.0)])


def test_absent_news_for_the_requester_travels_in_the_answer(context):
    # Nothing the pass reaches uses x: its absence is declared to worker0,
    # whose message the task answers.
    x = torch.ones(2)
    context.record_recv([x], peer=0, message_id=5)
    context.record_send([torch.ones(2, requires_grad=True) * 3], peer=0, message_id=11)
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(11, grads=[torch.ones(2)], src=0)
    assert p.sent() == []
    assert [(kind, message_id) for kind, message_id, _ in task.carried()] == [(_unit.ABSENT, 5)]


def test_an_error_of_a_carried_message_fails_the_task(context):
    x = torch.ones(2, requires_grad=True)
    context.record_send([Boom.apply(x)], peer=1, message_id=5)
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, worker="worker0", roots=[r.sum()])
    task = p.run_from_roots()
    p.answer(0, carried=[(_unit.GRADIENTS, 5, [torch.ones(2)])])
    finish(p)
    with pytest.raises(ValueError, match=r"boom in backward\n\(ValueError raised on worker 'worker0'\)"):
        task.result()
    assert grad_of(context, x) is None and not p.running()


def carried_to_the_initiator(context):
    """The initiator (worker0) sent x in message 5 and received r in message
    12: a pass from r, whose message to worker1 is answered."""
    x = torch.ones(2, requires_grad=True)
    context.record_send([x * 1], peer=1, message_id=5)
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, worker="worker0", roots=[r.sum()])
    return p, p.run_from_roots(), x


def test_a_carried_message_of_another_pass_fails_the_task(context):
    p, task, x = carried_to_the_initiator(context)
    p.answer(0, carried=[(_unit.GRADIENTS, 5, [torch.ones(2)])], carried_pass_id=PASS_ID + 1)
    finish(p)
    with pytest.raises(DistError, match=rf"the answer to a gradient message of context {CONTEXT_ID} carried "
                                           rf"a message of pass {PASS_ID + 1} of context {CONTEXT_ID} "
                                           rf"\(this pass is {PASS_ID}\)"):
        task.result()
    assert grad_of(context, x) is None and not p.running()


def test_a_carried_join_message_fails_the_task(context):
    p, task, x = carried_to_the_initiator(context)
    p.answer(0, carried=[(_unit.JOIN, 5, [])])
    finish(p)
    with pytest.raises(DistError, match=rf"context {CONTEXT_ID} carried a join message, which only "
                                           r"the pass's initiator sends"):
        task.result()
    assert grad_of(context, x) is None and not p.running()


# Errors.

def test_a_node_error_fails_the_task_and_the_pass(context):
    x = torch.ones(2, requires_grad=True)
    context.record_send([x * 2], peer=1, message_id=11)
    p = _unit.BackwardPass(context, PASS_ID, worker="worker0", roots=[Boom.apply(x).sum()])
    task = p.run_from_roots()
    assert task.done()
    with pytest.raises(ValueError, match=r"boom in backward\n\(ValueError raised on worker 'worker0'\)"):
        task.result()
    # Later tasks of the pass fail at once.
    later = p.run_from_send_node(11, grads=[torch.ones(2)])
    finish(p)
    with pytest.raises(ValueError, match="boom in backward"):
        later.result()
    assert grad_of(context, x) is None


def test_a_failed_send_fails_the_task(context):
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, roots=[r.sum()])
    p.set_fail_sends(True)
    task = p.run_from_roots()
    with pytest.raises(DistNetworkError, match="fake send to peer 1 failed"):
        task.result()


def test_a_peer_error_fails_the_task(context):
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    p = _unit.BackwardPass(context, PASS_ID, roots=[r.sum()])
    task = p.run_from_roots()
    p.answer_error(0, "DistTimeoutError", "worker2 did not answer", "worker1")
    with pytest.raises(DistTimeoutError, match="worker2 did not answer"):
        task.result()


def test_gradients_for_a_send_node_not_held(context):
    p = _unit.BackwardPass(context, PASS_ID, rank=1)
    task = p.run_from_send_node(99, grads=[torch.ones(1)])
    with pytest.raises(DistError, match="no send node for RPC message 99"):
        task.result()


def test_a_freed_send_node_cannot_run_again(context):
    w = torch.ones(2, requires_grad=True)
    context.record_send([w * 2], peer=0, message_id=61)
    first = _unit.BackwardPass(context, PASS_ID, rank=1)
    first.run_from_send_node(61, grads=[torch.ones(2)])
    finish(first)
    second = _unit.BackwardPass(context, PASS_ID + 1, rank=1)
    task = second.run_from_send_node(61, grads=[torch.ones(2)])
    with pytest.raises(DistError, match="freed by an earlier backward pass; use retain_graph=True"):
        task.result()


@pytest.mark.parametrize("retain_graph", [False, True])
def test_a_receive_node_runs_again_only_if_retained(context, retain_graph):
    r = torch.ones(2)
    context.record_recv([r], peer=1, message_id=12)
    loss = r.sum()
    first = _unit.BackwardPass(context, PASS_ID, retain_graph=retain_graph, roots=[loss])
    first.run_from_roots()
    first.answer(0)
    second = _unit.BackwardPass(context, PASS_ID + 1, retain_graph=retain_graph, roots=[loss])
    task = second.run_from_roots()
    if retain_graph:
        assert [s["message_id"] for s in second.sent()] == [12]
        second.answer(0)
        task.result()
    else:
        assert second.sent() == []
        with pytest.raises(DistError, match="through RPC message 12 .* a second time"):
            task.result()


def test_context_released_during_the_pass():
    context = _unit.Context(CONTEXT_ID)
    w = torch.ones(2, requires_grad=True)
    context.record_send([Double.apply(w)], peer=0, message_id=41)
    p = _unit.BackwardPass(context, PASS_ID, rank=1, worker="worker1")
    task = p.run_from_send_node(41, grads=[torch.ones(2)])
    del context  # the pass holds it weakly, as the real context holds its pass
    gc.collect()
    finish(p)
    with pytest.raises(DistError, match=f"context {CONTEXT_ID} was released during its backward pass"):
        task.result()


# Messages.

def test_reports_round_trip():
    reports = [(0, 5, [(1, 11), (2, 12)]), (3, 1, []), (2**40, 2**62, [(-1, 2**63 - 1)])]
    encoded = _unit.encode_reports(reports)
    assert encoded[:3] == [0, 5, 2]
    assert _unit.parse_reports(encoded) == reports
    assert _unit.parse_reports([]) == []


@pytest.mark.parametrize("encoded", [[1], [1, 2], [1, 2, 1], [1, 2, 1, 5], [1, 2, -1],
                                     [1, 2, 2**62, 0, 0], [1, 2, 0, 9]])
def test_malformed_reports(encoded):
    with pytest.raises(RuntimeError, match="malformed backward pass report"):
        _unit.parse_reports(encoded)


def test_gradient_message_round_trip():
    grads = [torch.ones(2), torch.zeros(3, 1)]
    args = _unit.propagate_gradients_to_args(_unit.ABSENT, CONTEXT_ID, 7, 11, True, 2.5, grads)
    kind, context_id, pass_id, message_id, retain, timeout, got = \
        _unit.propagate_gradients_from_args(args)
    assert (kind, context_id, pass_id, message_id, retain, timeout) == (
        _unit.ABSENT, CONTEXT_ID, 7, 11, True, 2.5)
    torch.testing.assert_close(got, grads)


@pytest.mark.parametrize("args", [
    [],
    [0, 1, 2, 3, False, 0.0],
    [3, 1, 2, 3, False, 0.0, ()],
    [-1, 1, 2, 3, False, 0.0, ()],
    [0, 1, 2, 3, 0, 0.0, ()],
    [0, 1, 2, 3, False, 0, ()],
    [0, 1, 2, 3, False, 0.0, (1,)],
    [0, 1, 2, 3, False, 0.0, [torch.ones(1)]],
])
def test_malformed_gradient_messages(args):
    with pytest.raises(RuntimeError, match="malformed gradient message"):
        _unit.propagate_gradients_from_args(args)
