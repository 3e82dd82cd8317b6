"""distgrad as a user installs it: `pip wheel` builds it with build isolation
(its build requirements come from pyproject.toml) in a venv that has only
torch, the wheel installs there, and the installed package works without
anything else (no numpy). The wheel build takes minutes: it is marked slow,
which `make test` leaves out and `make test-slow` runs."""

import faulthandler
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

# What a source distribution holds: enough to build the wheel.
SOURCES = ["setup.py", "pyproject.toml", "README.md", "operators", "python"]
# Seconds: compiling the extension takes 3-6 minutes on this 2-core machine.
BUILD_TIMEOUT = 1800

# Run in the venv, from a directory outside the source tree: one worker calls
# itself with a TorchScript function, then with a builtin operator and a
# Python function (whose arguments travel pickled) inside a distributed
# autograd context, with numpy unavailable.
SMOKE = textwrap.dedent("""
    import operator, socket, sys
    sys.modules["numpy"] = None  # any import of numpy fails
    import torch
    import distgrad, distgrad._C
    import distgrad.autograd as dist_autograd
    import distgrad.rpc as rpc
    from distgrad.examples import digits

    assert distgrad.__file__.startswith(sys.prefix), distgrad.__file__
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rpc.init_rpc("solo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    t = torch.ones(2, 2, requires_grad=True)
    b = rpc.rpc_sync("solo", digits.make_parameter, args=(t.detach(),))
    with dist_autograd.context() as context_id:
        a = rpc.rpc_sync("solo", torch.add, args=(t, 1))
        c = rpc.rpc_sync("solo", operator.mul, args=(t, 3))
        dist_autograd.backward(context_id, [(a + c).sum()])
        grad = dist_autograd.get_gradients(context_id)[t]
    rpc.shutdown()
    assert b.eq(1).all() and grad.eq(4).all(), (b, grad)
    print("smoke ok", distgrad._C.__file__)
""")


def _run(command, cwd, timeout, env=None):
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{result.stdout[-20000:]}"
    return result.stdout


@pytest.fixture
def long_timeout():
    """pytest.ini's faulthandler_timeout (which ends the run) is for tests
    of seconds; this one may take BUILD_TIMEOUT."""
    faulthandler.dump_traceback_later(BUILD_TIMEOUT + 60, exit=True)


@pytest.mark.slow
def test_wheel_builds_isolated_and_works_in_a_venv_with_only_torch(tmp_path, long_timeout):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            # Without the build outputs of a development install.
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    # Nothing of this environment's packages may leak into the venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.setdefault("MAX_JOBS", "2")
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 300, env)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "torch==2.13.0"], tmp_path, 900, env)

    wheels = tmp_path / "wheels"
    _run([python, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(source)], tmp_path, BUILD_TIMEOUT, env)
    (wheel,) = wheels.glob("distgrad-0.1.0-*.whl")
    _run([python, "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, 300, env)

    installed = _run([python, "-m", "pip", "list", "--format=freeze"], tmp_path, 60, env)
    assert "distgrad==0.1.0" in installed and "numpy" not in installed.lower(), installed
    output = _run([python, "-c", SMOKE], tmp_path, 120, env)
    assert "smoke ok" in output and str(venv) in output, output


def test_python_calls_need_no_numpy(tmp_path):
    """The part of the smoke test above that needs no wheel: this
    environment's distgrad with numpy made unavailable."""
    smoke = SMOKE.replace("assert distgrad.__file__.startswith(sys.prefix), distgrad.__file__", "")
    output = _run([sys.executable, "-c", smoke], tmp_path, 120)
    assert "smoke ok" in output, output
