"""The example programs of tools/examples/ run as users run them (a
subprocess per example, bounded in time), exit 0, learn their task, and
leave no process behind; their launcher reports the failure of a worker."""

import multiprocessing
import os
import re
import sys

import pytest

from tests.checks import run_program
from tests.conftest import ROOT
from tests.user_facing import launch_fns
from tools.examples.launch import run_job

# Seconds an example may take here (it takes a few); the examples' own job
# timeout is below it, so that a stuck job reports itself first.
EXAMPLE_TIMEOUT = 90
JOB_TIMEOUT = 60


def _number(pattern, output):
    match = re.search(pattern, output)
    assert match, f"no line matching {pattern!r} in:\n{output}"
    return [float(group) for group in match.groups()]


def _epoch_lines(output):
    return re.findall(r"^epoch \d+: .*$", output, flags=re.MULTILINE)


def check_parameter_server(output):
    (accuracy,) = _number(r"final held-out accuracy ([\d.]+)", output)
    assert accuracy >= 0.9, output  # chance is about 0.3; the model reaches about 0.97
    losses = [float(x) for x in re.findall(r"^epoch \d+: train loss ([\d.]+)", output, flags=re.MULTILINE)]
    assert losses[-1] < 0.5 * losses[0], output


def check_rnn(output):
    first, final, accuracy = _number(r"loss ([\d.]+) -> ([\d.]+), held-out next-token accuracy ([\d.]+)", output)
    assert final < 0.3 * first, output  # about 1.9 -> 0.14
    assert accuracy >= 0.95, output  # chance is about 0.3; the model reaches 1.0


def check_pipeline(output):
    first, final, error = _number(r"loss ([\d.]+) -> ([\d.]+), held-out relative error ([\d.]+)", output)
    assert final < 0.25 * first, output  # about 0.0136 -> 0.0009
    assert error < 0.15, output  # about 0.04
    # Gradients crossed the async_execution hop to the first stage too.
    moved_first, moved_last = _number(r"parameters moved: worker1 ([\d.]+), worker2 ([\d.]+)", output)
    assert moved_first > 0.01 and moved_last > 0.01, output


EXAMPLES = [
    pytest.param("parameter_server.py", ["--trainers", "2", "--epochs", "3"], 3, check_parameter_server,
                 id="parameter_server"),
    pytest.param("rnn.py", ["--epochs", "5"], 5, check_rnn, id="rnn"),
    pytest.param("pipeline.py", ["--epochs", "5", "--micro-batches", "4"], 5, check_pipeline, id="pipeline"),
]


def run_example(script, args):
    """(exit code, output) of tools/examples/<script> args, bounded by
    EXAMPLE_TIMEOUT (see run_program)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, str(ROOT / "tools" / "examples" / script), *args, "--timeout", str(JOB_TIMEOUT)]
    return run_program(command, EXAMPLE_TIMEOUT, cwd=ROOT, env=env)


@pytest.mark.parametrize("script, args, epochs, check", EXAMPLES)
def test_example_learns(script, args, epochs, check):
    code, output = run_example(script, args)
    assert code == 0, output
    assert len(_epoch_lines(output)) == epochs, output
    check(output)


def test_launcher_names_workers_and_returns_rank0_result():
    names, config = run_job(launch_fns.names_seen, ["a", "b", "c"], {"k": 1}, JOB_TIMEOUT)
    assert names == ["a", "b", "c"]
    assert config == {"k": 1}
    assert multiprocessing.active_children() == []


def test_launcher_reports_the_failing_worker():
    with pytest.raises(RuntimeError, match=r"(?s)worker 'b' failed:.*ValueError: worker 1 fails on purpose"):
        run_job(launch_fns.fail_on_rank_one, ["a", "b", "c"], None, JOB_TIMEOUT)
    assert multiprocessing.active_children() == []


def test_launcher_reports_a_worker_that_exits_without_reporting():
    with pytest.raises(RuntimeError, match=r"worker 'b' exited with code 3 without reporting"):
        run_job(launch_fns.exit_on_rank_one, ["a", "b", "c"], None, JOB_TIMEOUT)
    assert multiprocessing.active_children() == []
