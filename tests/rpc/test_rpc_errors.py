"""Errors raised by the callee come back to the caller: as the same Python
built-in exception type with the original message, or as RuntimeError, and
always naming the worker where they were raised."""

import pytest
import torch

import distgrad.rpc as rpc
from tests import remote_fns, script_fns
from tests.checks import remote_message

CALLS = [rpc.rpc_sync, lambda *args, **kwargs: rpc.rpc_async(*args, **kwargs).wait()]
CALL_IDS = ["sync", "async"]

# (func, args, exception type, the first line of the remote message)
PYTHON_ERRORS = [
    pytest.param(remote_fns.raise_value_error, ("bad value 42",), ValueError, "bad value 42", id="ValueError"),
    pytest.param(remote_fns.raise_key_error, ("missing",), KeyError, "'missing'", id="KeyError"),
    pytest.param(remote_fns.divide, (1, 0), ZeroDivisionError, "division by zero", id="ZeroDivisionError"),
    pytest.param(remote_fns.add, (1,), TypeError,
                 "add() missing 1 required positional argument: 'b'", id="TypeError-wrong-arguments"),
    pytest.param(remote_fns.raise_custom_error, ("custom trouble",), RuntimeError,
                 "tests.remote_fns.CustomError: custom trouble", id="custom-class"),
]


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
@pytest.mark.parametrize("dst", ["worker1", "worker2", "worker0"])
@pytest.mark.parametrize("func, args, error_type, first_line", PYTHON_ERRORS)
def test_python_function_raises(cluster, call, dst, func, args, error_type, first_line):
    with pytest.raises(error_type) as excinfo:
        call(dst, func, args)
    assert type(excinfo.value) is error_type
    message = remote_message(excinfo)
    assert message.splitlines()[0] == first_line
    assert "Remote traceback:" in message
    assert message.endswith(f"({error_type.__name__} raised on worker '{dst}')")


def test_custom_exception_class_name_and_message(cluster):
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker1", remote_fns.raise_custom_error, ("x",))
    assert "CustomError" in str(excinfo.value)
    assert not isinstance(excinfo.value, remote_fns.CustomError)


@pytest.mark.parametrize("func, name", [(remote_fns.raise_system_exit, "SystemExit"),
                                        (remote_fns.raise_keyboard_interrupt, "KeyboardInterrupt")])
def test_remote_base_exception_is_a_runtime_error_here(cluster, func, name):
    # A callee's SystemExit must not end the caller, nor escape `except Exception`.
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker1", func)
    assert remote_message(excinfo).startswith(f"builtins.{name}: ")
    assert remote_message(excinfo).endswith("(RuntimeError raised on worker 'worker1')")
    assert rpc.rpc_sync("worker1", remote_fns.whoami) == "worker1"


def test_exception_class_not_built_from_a_message(cluster):
    # UnicodeDecodeError takes five arguments: the caller gets a RuntimeError naming it.
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker1", remote_fns.bad_decode)
    assert remote_message(excinfo).startswith(
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte")
    assert "(UnicodeDecodeError raised on worker 'worker1')" in remote_message(excinfo)


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_builtin_operator_fails(cluster, call):
    with pytest.raises(RuntimeError) as excinfo:
        call("worker1", torch.add, (torch.ones(2), torch.ones(3)))
    assert str(excinfo.value) == (
        "The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0\n"
        "(RuntimeError raised on worker 'worker1')"
    )


@pytest.mark.parametrize("func", [script_fns.check_positive, "tests.script_fns.check_positive"],
                         ids=["object", "by-name"])
def test_torchscript_function_raises(cluster, func):
    with pytest.raises(RuntimeError) as excinfo:
        rpc.rpc_sync("worker2", func, (-torch.ones(2),))
    message = str(excinfo.value)
    assert "expected positive values" in message
    assert message.endswith("(RuntimeError raised on worker 'worker2')")


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
@pytest.mark.parametrize("name", ["tests.script_fns.no_such_function", "no_such_module.some_function"])
def test_unknown_torchscript_function_by_name(cluster, call, name):
    with pytest.raises(ValueError) as excinfo:
        call("worker1", name, (torch.ones(1),))
    message = str(excinfo.value)
    assert f"unknown TorchScript function '__torch__.{name}'" in message
    assert message.endswith("(ValueError raised on worker 'worker1')")


def test_torchscript_function_with_wrong_arguments(cluster):
    with pytest.raises(TypeError, match="local_add\\(\\) takes at most 2 arguments but 3 were given"):
        rpc.rpc_sync("worker1", script_fns.local_add, (torch.ones(1), torch.ones(1), torch.ones(1)))
    with pytest.raises(TypeError, match="local_add\\(\\) is missing argument 't2'"):
        rpc.rpc_sync("worker1", script_fns.local_add, (torch.ones(1),))


def test_keyword_arguments_with_function_by_name(cluster):
    with pytest.raises(ValueError, match="keyword arguments are not supported when func is given by name"):
        rpc.rpc_sync("worker1", "tests.script_fns.scale", (torch.ones(1),), {"factor": 2.0})


@pytest.mark.parametrize("func", [42, object()], ids=["int", "object"])
def test_func_that_is_not_callable(cluster, func):
    with pytest.raises(TypeError, match="func must be callable or the name of a TorchScript function"):
        rpc.rpc_sync("worker1", func)


def test_worker_still_serves_after_errors(cluster):
    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            rpc.rpc_sync("worker1", remote_fns.divide, (1, 0))
        assert rpc.rpc_sync("worker1", remote_fns.divide, (1, 4)) == 0.25
