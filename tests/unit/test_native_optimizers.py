"""The native optimizers (operators/optim): SGD and Adagrad compute what
torch.optim's compute, bit for bit, from gradients they are handed; the
registry finds an optimizer by id while its entry lives; the step message
travels intact."""

import pytest
import torch

from distgrad import _unit

OPTIONS = [
    pytest.param({"lr": 0.1}, id="plain"),
    pytest.param({"lr": 0.1, "momentum": 0.9}, id="momentum"),
    pytest.param({"lr": 0.1, "momentum": 0.9, "nesterov": True}, id="nesterov"),
    pytest.param({"lr": 0.1, "weight_decay": 0.01}, id="weight-decay"),
    pytest.param({"lr": 0.03, "momentum": 0.5, "dampening": 0.25, "weight_decay": 0.2}, id="dampening"),
]
# Gradients per step for two parameters; None: that parameter has none in
# that step (torch's .grad is None, the native step is handed none).
STEPS = [(True, True), (True, False), (False, True), (True, True)]


def make_params(dtype):
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(3, 5, generator=generator, dtype=dtype).requires_grad_(),
            torch.randn(1000, generator=generator, dtype=dtype).requires_grad_()]


def gradients(params, present, step):
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype) if has else None
            for p, has in zip(params, present)]


def assert_steps_equal(native, native_params, reference, torch_params):
    """Steps the native optimizer and torch's reference through STEPS with
    the same gradients; after each step the parameters must be equal bit for
    bit, with equal version counters (an in-place update a saved tensor would
    notice, as torch's is), and the native step must leave .grad alone."""
    for step, present in enumerate(STEPS):
        grads = gradients(native_params, present, step)
        native.step(grads)
        for p, g in zip(torch_params, grads):
            p.grad = g
        reference.step()
        for i, (a, e) in enumerate(zip(native_params, torch_params)):
            assert torch.equal(a.detach(), e.detach()), f"step {step}, parameter {i}"
            assert a._version == e._version, f"step {step}, parameter {i}"
    assert all(p.grad is None for p in native_params), "the native step set .grad"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", OPTIONS)
def test_sgd_equals_torch_sgd(options, dtype):
    native_params, torch_params = make_params(dtype), make_params(dtype)
    native = _unit.Sgd(native_params, **options)
    reference = torch.optim.SGD(torch_params, **options)
    assert_steps_equal(native, native_params, reference, torch_params)


def sparse_gradient(rows):
    """A gradient of a (6, 2) parameter for rows (an embedding's with
    sparse=True); a row listed twice adds up."""
    return torch.sparse_coo_tensor(torch.tensor([rows]), torch.full((len(rows), 2), 0.5), (6, 2),
                                   check_invariants=True)


@pytest.mark.parametrize("options", OPTIONS[:3])
def test_sgd_with_sparse_gradients_equals_torch_sgd(options):
    # The same tensor operations, so the same results for sparse gradients too.
    native_param, torch_param = torch.ones(6, 2, requires_grad=True), torch.ones(6, 2, requires_grad=True)
    native = _unit.Sgd([native_param], **options)
    reference = torch.optim.SGD([torch_param], **options)
    for rows in ([1, 4], [4, 0, 4]):
        native.step([sparse_gradient(rows)])
        torch_param.grad = sparse_gradient(rows)
        reference.step()
        assert torch.equal(native_param.detach(), torch_param.detach())


def test_sgd_with_sparse_gradients_and_weight_decay_fails_as_torch_does():
    param = torch.ones(6, 2, requires_grad=True)
    message = r"add\(sparse, dense\) is not supported"
    with pytest.raises(RuntimeError, match=message):
        _unit.Sgd([param], lr=0.1, weight_decay=0.1).step([sparse_gradient([1])])
    param.grad = sparse_gradient([1])
    with pytest.raises(RuntimeError, match=message):
        torch.optim.SGD([param], lr=0.1, weight_decay=0.1).step()
    assert torch.equal(param.detach(), torch.ones(6, 2))


@pytest.mark.parametrize("make", [
    lambda params: _unit.Sgd(params, lr=0.5, momentum=0.9, weight_decay=1.0),
    lambda params: native_adagrad(params, {"lr": 0.5, "weight_decay": 1.0}),
], ids=["sgd", "adagrad"])
def test_a_step_without_gradients_changes_nothing(make):
    param = torch.arange(4.0, requires_grad=True)
    make([param]).step([None])
    assert torch.equal(param.detach(), torch.arange(4.0)) and param._version == 0


ADAGRAD_OPTIONS = [
    pytest.param({"lr": 0.01}, id="defaults"),
    pytest.param({"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}, id="decays"),
    pytest.param({"lr": 0.05, "initial_accumulator_value": 0.5, "eps": 1e-6}, id="accumulator-eps"),
]


def native_adagrad(params, options):
    """The native Adagrad, from the state torch.optim.Adagrad makes (as
    distgrad.optim builds it)."""
    state = torch.optim.Adagrad(params, **options).state
    initial = {k: v for k, v in options.items() if k != "initial_accumulator_value"}
    return _unit.Adagrad(params, [state[p]["step"] for p in params], [state[p]["sum"] for p in params], **initial)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
@pytest.mark.parametrize("options", ADAGRAD_OPTIONS)
def test_adagrad_equals_torch_adagrad(options, dtype):
    native_params, torch_params = make_params(dtype), make_params(dtype)
    native = native_adagrad(native_params, options)
    reference = torch.optim.Adagrad(torch_params, **options)
    assert_steps_equal(native, native_params, reference, torch_params)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")  # torch's own Adagrad warns
def test_adagrad_with_sparse_gradients_equals_torch_adagrad():
    native_param, torch_param = torch.ones(6, 2, requires_grad=True), torch.ones(6, 2, requires_grad=True)
    options = {"lr": 0.1, "lr_decay": 0.01}
    native = native_adagrad([native_param], options)
    reference = torch.optim.Adagrad([torch_param], **options)
    for rows in ([1, 4], [4, 0, 4], [5]):
        native.step([sparse_gradient(rows)])
        torch_param.grad = sparse_gradient(rows)
        reference.step()
        assert torch.equal(native_param.detach(), torch_param.detach())


def test_adagrad_with_sparse_gradients_and_weight_decay_fails_as_torch_does():
    param = torch.ones(6, 2, requires_grad=True)
    message = "weight_decay option is not compatible with sparse gradients"
    with pytest.raises(RuntimeError, match=message):
        native_adagrad([param], {"lr": 0.1, "weight_decay": 0.1}).step([sparse_gradient([1])])
    param.grad = sparse_gradient([1])
    with pytest.raises(RuntimeError, match=message):
        torch.optim.Adagrad([param], lr=0.1, weight_decay=0.1).step()
    assert torch.equal(param.detach(), torch.ones(6, 2))


def test_registry_finds_an_optimizer_while_its_entry_lives():
    registry = _unit.OptimizerRegistry()
    first, second = _unit.Sgd([torch.zeros(1)], lr=0.1), _unit.Sgd([torch.zeros(1)], lr=0.1)
    entry_first, entry_second = registry.add(first), registry.add(second)
    assert (entry_first.id, entry_second.id) == (1, 2)
    assert registry.holds(1, first) and registry.holds(2, second) and not registry.holds(2, first)
    assert registry.size() == 2
    del entry_first
    assert not registry.holds(1, first) and registry.size() == 1
    # Ids are not reused.
    assert registry.add(first).id == 3
    assert registry.size() == 1  # that entry died at once


def test_step_message_round_trip():
    context_id = (3 << 48) + 17
    args = _unit.step_optimizer_to_args(5, context_id, True)
    assert args == (5, context_id, True)
    assert _unit.step_optimizer_from_args(args) == (5, context_id, True)
    with pytest.raises(RuntimeError, match="malformed optimizer step message"):
        _unit.step_optimizer_from_args((5, context_id))
