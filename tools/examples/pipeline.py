"""A model split into two pipeline stages on two workers, fed micro-batches.

    python tools/examples/pipeline.py [--epochs E] [--steps S] [--batch-size B] [--micro-batches M]
                                      [--lr LR] [--seed SEED] [--timeout T]

Shape of the job (3 processes on this machine):

    master (rank 0)                      worker1 (rank 1)                     worker2 (rank 2)
    ---------------                      ----------------                     ----------------
    stage2 = rpc.remote("worker2", LastStage) ------------------------------> LastStage
    stage1 = rpc.remote("worker1", FirstStage, (stage2,)) --> FirstStage (holds stage2, an RRef
                                                              owned by worker2)
    optimizer = DistributedOptimizer(SGD, RRefs to both stages' parameters)
    each step, in a dist_autograd context, for each micro-batch x at once:
      stage1.rpc_async().forward(RRef(x)) --> x = x_rref.to_here()
                                              h = layers(x)
                                              return stage2.rpc_async().forward(h) --> layers(h)
                                              (@async_execution: the reply goes when
                                              stage 2's does; no thread waits meanwhile)
      outputs = torch.cat(wait_all(futures))
      loss = mse_loss(outputs, targets)
      dist_autograd.backward(ctx, [loss])  gradients go master -> worker1 -> worker2 -> worker1
      optimizer.step(ctx)                  SGD steps on worker1 and worker2 at once

While stage 2 works on one micro-batch, stage 1 works on the next: each stage
takes one micro-batch at a time (a lock), and the micro-batches queue up at
the stages. The task is a fixed-seed regression: the targets are what a
random "teacher" network of the same shape computes from random inputs. The
final metric is the mean squared error on held-out inputs, relative to the
targets' variance (1.0 is no better than predicting the mean).
"""

import argparse
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `tools.examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import distgrad.autograd as dist_autograd  # noqa: E402
import distgrad.rpc as rpc  # noqa: E402
from distgrad.optim import DistributedOptimizer  # noqa: E402
from tools.examples.launch import run_job  # noqa: E402

INPUTS = 8
HIDDEN = 64
OUTPUTS = 4
HELD_OUT = 512


def first_layers(generator):
    layers = nn.Sequential(nn.Linear(INPUTS, HIDDEN), nn.Tanh())
    return _redraw(layers, generator)


def last_layers(generator):
    layers = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OUTPUTS))
    return _redraw(layers, generator)


def _redraw(layers, generator):
    """Draws the parameters of layers from generator (scaled as nn.Linear's
    defaults), so that every process builds the same model for a seed."""
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features ** -0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return layers


class Stage:
    """One stage of the pipeline, on its worker: its layers, run for one
    micro-batch at a time."""

    def __init__(self, layers):
        self.layers = layers
        self.lock = threading.Lock()
        self.initial = [p.detach().clone() for p in layers.parameters()]

    def run(self, x):
        with self.lock:
            return self.layers(x)

    def parameter_rrefs(self):
        return [rpc.RRef(p) for p in self.layers.parameters()]

    def distance_moved(self):
        """How far training has moved the parameters (L2 norm of the change):
        zero would mean no gradient ever reached this stage."""
        with torch.no_grad():
            return torch.cat([(p - q).flatten() for p, q in zip(self.layers.parameters(), self.initial)]).norm().item()


class LastStage(Stage):
    """On worker2."""

    def __init__(self, seed):
        super().__init__(last_layers(torch.Generator().manual_seed(seed)))

    def forward(self, h):
        return self.run(h)


class FirstStage(Stage):
    """On worker1: runs its layers, then hands the result to the last stage."""

    def __init__(self, next_stage, seed):
        super().__init__(first_layers(torch.Generator().manual_seed(seed)))
        self.next_stage = next_stage

    @rpc.functions.async_execution
    def forward(self, x_rref):
        """Returns a future of the last stage's output: the caller gets its
        reply when that future completes, and this worker holds no thread
        while the micro-batch is on worker2."""
        return self.next_stage.rpc_async().forward(self.run(x_rref.to_here()))


class Pipeline:
    """The master's view: both stages, fed micro-batches."""

    def __init__(self, seed, micro_batches):
        last = rpc.remote("worker2", LastStage, args=(seed + 1,))
        self.first = rpc.remote("worker1", FirstStage, args=(last, seed))
        self.last = last
        self.micro_batches = micro_batches

    def __call__(self, x):
        futures = [self.first.rpc_async().forward(rpc.RRef(chunk)) for chunk in x.chunk(self.micro_batches)]
        return torch.cat(torch.futures.wait_all(futures))

    def parameter_rrefs(self):
        return self.first.rpc_sync().parameter_rrefs() + self.last.rpc_sync().parameter_rrefs()

    def distance_moved(self):
        return {"worker1": self.first.rpc_sync().distance_moved(), "worker2": self.last.rpc_sync().distance_moved()}


def make_data(seed, count):
    """(inputs, targets) of the teacher network drawn from seed."""
    generator = torch.Generator().manual_seed(seed)
    teacher = nn.Sequential(first_layers(generator), last_layers(generator))
    inputs = torch.randn(count, INPUTS, generator=generator)
    with torch.no_grad():
        targets = teacher(inputs)
    return inputs, targets


def relative_error(model, inputs, targets):
    with torch.no_grad():
        return (F.mse_loss(model(inputs), targets) / targets.var()).item()


def run_worker(rank, config):
    """Rank 0 is the master and drives everything; the stages only serve."""
    if rank != 0:
        return None
    model = Pipeline(config.seed, config.micro_batches)
    optimizer = DistributedOptimizer(torch.optim.SGD, model.parameter_rrefs(), lr=config.lr, momentum=0.9)
    teacher_seed = config.seed + 1000
    total = config.epochs * config.steps * config.batch_size
    inputs, targets = make_data(teacher_seed, total + HELD_OUT)
    held_out = inputs[total:], targets[total:]
    history = []
    for epoch in range(config.epochs):
        loss_sum = 0.0
        for step in range(config.steps):
            start = (epoch * config.steps + step) * config.batch_size
            batch = slice(start, start + config.batch_size)
            with dist_autograd.context() as context_id:
                loss = F.mse_loss(model(inputs[batch]), targets[batch])
                dist_autograd.backward(context_id, [loss])
                optimizer.step(context_id)
            loss_sum += loss.item()
        history.append({"train_loss": loss_sum / config.steps, "relative_error": relative_error(model, *held_out)})
        print(f"epoch {epoch}: train loss {history[-1]['train_loss']:.5f}  "
              f"held-out relative error {history[-1]['relative_error']:.4f}", flush=True)
    moved = model.distance_moved()
    print(f"parameters moved: worker1 {moved['worker1']:.4f}, worker2 {moved['worker2']:.4f}", flush=True)
    return {"history": history, "first_loss": history[0]["train_loss"], "final_loss": history[-1]["train_loss"],
            "relative_error": history[-1]["relative_error"], "moved": moved}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--micro-batches", type=int, default=4, help="micro-batches per batch")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the whole job may take")
    config = parser.parse_args(argv)
    if min(config.epochs, config.steps, config.micro_batches) < 1 or config.batch_size < config.micro_batches:
        parser.error("--epochs, --steps and --micro-batches must be at least 1, --batch-size at least "
                     "--micro-batches")
    return config


def main(argv=None):
    """Runs the job; returns {"first_loss", "final_loss": mean train loss of
    the first and last epoch, "relative_error": final held-out MSE over the
    targets' variance, "moved": how far each stage's parameters moved,
    "history": per epoch, "seconds": wall time}."""
    config = parse_args(argv)
    start = time.monotonic()
    result = run_job(run_worker, ["master", "worker1", "worker2"], config, config.timeout)
    result["seconds"] = time.monotonic() - start
    print(f"loss {result['first_loss']:.5f} -> {result['final_loss']:.5f}, held-out relative error "
          f"{result['relative_error']:.4f} ({result['seconds']:.1f} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
