"""A parameter server and N trainers learning one classifier together.

    python tools/examples/parameter_server.py [--trainers N] [--epochs E] [--batch-size B] [--lr LR]
                                              [--hidden H] [--train-samples S] [--seed SEED] [--timeout T]

Shape of the job (N + 1 processes on this machine):

    ps (rank 0)                          trainer1 .. trainerN
    -----------                          --------------------
    model = Net()  (the only copy of the model)
    model_rref = RRef(model)
    rpc.remote(trainer_i, Trainer,  ---------------------> Trainer: its shard of the data, and a
               (model_rref, i, ...))                       DistributedOptimizer over the model's
                                                           parameters (RRefs made on the ps)
    each epoch:
      trainer_rref.rpc_async().train_epoch() ------------> for each batch, in a dist_autograd context:
                                                  <------   logits = model_rref.rpc_sync().forward(x, ...)
                                                            loss = cross_entropy(logits, y)   (locally)
                                                  <------   dist_autograd.backward(ctx, [loss])
                                                  <------   optimizer.step(ctx)
      held-out accuracy of the model, printed

The trainers run at the same time: their forward passes and optimizer steps
interleave on the ps, each step applying the gradients of that trainer's own
context. The data is a fixed-seed mixture of Gaussian clusters, three per
class, so that a linear model cannot separate the classes and the two-layer
network can; every process rebuilds it from the seed.
"""

import argparse
import sys
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

FEATURES = 16
CLASSES = 4
CLUSTERS_PER_CLASS = 3
TEST_SAMPLES = 1024


def make_data(seed, train_samples):
    """(train_x, train_y, test_x, test_y): points scattered around cluster
    centres, each cluster belonging to one class, the same for a given seed
    in every process."""
    generator = torch.Generator().manual_seed(seed)
    centres = 1.2 * torch.randn(CLASSES * CLUSTERS_PER_CLASS, FEATURES, generator=generator)
    total = train_samples + TEST_SAMPLES
    cluster = torch.randint(0, len(centres), (total,), generator=generator)
    x = centres[cluster] + torch.randn(total, FEATURES, generator=generator)
    y = cluster % CLASSES
    return x[:train_samples], y[:train_samples], x[train_samples:], y[train_samples:]


class Net(nn.Module):
    """The model the parameter server holds: a two-layer perceptron."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden = nn.Linear(FEATURES, hidden)
        self.out = nn.Linear(hidden, CLASSES)

    def forward(self, x, copy_parameters=False):
        """The logits for x. On the parameter server, other trainers'
        optimizer steps change the parameters in place while this trainer's
        backward pass is still to come, and autograd refuses to use a tensor
        saved for backward that has changed since. With copy_parameters the
        layers therefore compute with copies of the parameters, which are
        what autograd saves; the gradients still reach the parameters."""
        weights = (self.hidden.weight, self.hidden.bias, self.out.weight, self.out.bias)
        if copy_parameters:
            weights = [w.clone() for w in weights]
        hidden_weight, hidden_bias, out_weight, out_bias = weights
        return F.linear(torch.relu(F.linear(x, hidden_weight, hidden_bias)), out_weight, out_bias)

    def parameter_rrefs(self):
        """RRefs to the parameters, made here on their owner, for a
        DistributedOptimizer on another worker."""
        return [rpc.RRef(p) for p in self.parameters()]


class Trainer:
    """Lives on a trainer: its shard of the training data and its optimizer
    over the parameter server's parameters."""

    def __init__(self, model_rref, shard, num_shards, config):
        x, y, _, _ = make_data(config.seed, config.train_samples)
        self.x, self.y = x[shard::num_shards], y[shard::num_shards]
        self.model_rref = model_rref
        self.shuffle = torch.Generator().manual_seed(config.seed + 1 + shard)
        self.batch_size = config.batch_size
        self.optimizer = DistributedOptimizer(torch.optim.SGD, model_rref.rpc_sync().parameter_rrefs(),
                                              lr=config.lr, momentum=0.9)

    def train_epoch(self):
        """One pass over the shard in random batches; returns the mean loss."""
        order = torch.randperm(len(self.x), generator=self.shuffle)
        total = 0.0
        batches = 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            with dist_autograd.context() as context_id:
                logits = self.model_rref.rpc_sync().forward(self.x[batch], copy_parameters=True)
                loss = F.cross_entropy(logits, self.y[batch])
                dist_autograd.backward(context_id, [loss])
                self.optimizer.step(context_id)
            total += loss.item()
            batches += 1
        return total / batches


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def run_worker(rank, config):
    """Rank 0 is the parameter server and drives the training; the trainers
    only serve its calls."""
    if rank != 0:
        return None
    torch.manual_seed(config.seed)
    model = Net(config.hidden)
    _, _, test_x, test_y = make_data(config.seed, config.train_samples)
    model_rref = rpc.RRef(model)
    trainers = [rpc.remote(f"trainer{i}", Trainer, args=(model_rref, i - 1, config.trainers, config))
                for i in range(1, config.trainers + 1)]
    history = []
    for epoch in range(config.epochs):
        losses = torch.futures.wait_all([trainer.rpc_async().train_epoch() for trainer in trainers])
        history.append({"train_loss": sum(losses) / len(losses), "test_accuracy": accuracy(model, test_x, test_y)})
        print(f"epoch {epoch}: train loss {history[-1]['train_loss']:.4f}  "
              f"held-out accuracy {history[-1]['test_accuracy']:.4f}", flush=True)
    return {"history": history, "test_accuracy": history[-1]["test_accuracy"]}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", "--workers", type=int, default=2, help="number of trainer processes")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    parser.add_argument("--train-samples", type=int, default=2048, help="shared among the trainers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the whole job may take")
    config = parser.parse_args(argv)
    if config.trainers < 1 or config.epochs < 1:
        parser.error("--trainers and --epochs must be at least 1")
    return config


def main(argv=None):
    """Runs the job; returns {"test_accuracy": final held-out accuracy,
    "history": per-epoch train loss and accuracy, "seconds": wall time}."""
    config = parse_args(argv)
    names = ["ps"] + [f"trainer{i}" for i in range(1, config.trainers + 1)]
    start = time.monotonic()
    result = run_job(run_worker, names, config, config.timeout)
    result["seconds"] = time.monotonic() - start
    print(f"final held-out accuracy {result['test_accuracy']:.4f} ({result['seconds']:.1f} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
