"""`python -m distgrad.examples.train` (the demo `make demo` runs) learns,
started by itself and under torchrun, and leaves no process behind. Only the
distgrad backend runs here, for a few epochs; `make demo` runs both."""

import os
import re
import sys

from tests.checks import free_port, run_program

# Seconds a run may take here (one takes about 10); the program's own job
# timeout is below it, so that a stuck job reports itself first.
RUN_TIMEOUT = 90
JOB_TIMEOUT = 60
EPOCHS = 3


def run(command):
    """(exit code, output) of command, bounded by RUN_TIMEOUT (see run_program)."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # the program sets one thread per worker itself
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return run_program(command, RUN_TIMEOUT, env=env)


def check_learned(output):
    epochs = re.findall(r"^\[distgrad\] epoch (\d+)/\d+: train loss ([\d.]+)  held-out accuracy ([\d.]+)",
                        output, flags=re.MULTILINE)
    assert [int(e[0]) for e in epochs] == list(range(1, EPOCHS + 1)), output
    losses = [float(e[1]) for e in epochs]
    assert losses[-1] < 0.25 * losses[0], output  # about 1.7 -> 0.21
    match = re.search(r"^\[distgrad\] held-out accuracy ([\d.]+) \(359 images\) after 3 epochs; "
                      r"([\d.]+) ms per iteration", output, flags=re.MULTILINE)
    assert match, output
    # Chance is 0.1; the model reaches about 0.93 after 3 epochs and 0.95 after 10.
    assert float(match.group(1)) >= 0.85, output
    assert float(match.group(2)) > 0, output
    assert "torch.distributed.rpc" not in output, output  # --backend distgrad only


ARGS = ["--backend", "distgrad", "--epochs", str(EPOCHS), "--timeout", str(JOB_TIMEOUT)]


def test_train_spawning_its_workers_learns():
    code, output = run([sys.executable, "-m", "distgrad.examples.train", *ARGS])
    assert code == 0, output
    check_learned(output)


def test_train_under_torchrun_learns():
    # torchrun's agent hosts the store; init_rpc finds it through
    # TORCHELASTIC_USE_AGENT_STORE and takes RANK and WORLD_SIZE from the environment.
    code, output = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=3",
                        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
                        "-m", "distgrad.examples.train", *ARGS])
    assert code == 0, output
    check_learned(output)
    assert "failed to bind" not in output.lower(), output
    assert "Traceback" not in output, output
