"""A recurrent language model split across two workers with RRefs.

    python tools/examples/rnn.py [--epochs E] [--steps S] [--batch-size B] [--seq-len L] [--lr LR]
                                 [--seed SEED] [--timeout T]

Shape of the job (2 processes on this machine):

    trainer (rank 0)                                      ps (rank 1)
    ----------------                                      -----------
    embedding_rref = rpc.remote("ps", EmbeddingTable) --> EmbeddingTable  (tokens -> vectors)
    decoder_rref = rpc.remote("ps", Decoder)          --> Decoder         (LSTM outputs -> logits)
    lstm = nn.LSTM(...)  (here)
    optimizer = DistributedOptimizer(Adam, RRefs to the ps's parameters and to the LSTM's)
    each step, in a dist_autograd context:
      vectors = embedding_rref.rpc_sync().forward(tokens) --> (the tokens need no grad;
                                                               the vectors come back requiring it)
      outputs, _ = lstm(vectors)
      logits = decoder_rref.rpc_sync().forward(outputs)   -->
      loss = cross_entropy(logits, next tokens)
      dist_autograd.backward(ctx, [loss])   gradients go ps (decoder) -> trainer (LSTM) -> ps (embedding)
      optimizer.step(ctx)                   Adam steps on both workers at once

The task: sequences are windows of one fixed repeating pattern of tokens,
starting at random places; the model predicts each next token. A token may
be followed by different tokens at different places in the pattern, so the
model has to remember the tokens before it. The loss falls from about
log(vocabulary) to near zero; the final metric is the next-token accuracy
on held-out windows, counted from the fourth token on (once enough of the
window has been seen to know where in the pattern it is).
"""

import argparse
import math
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

# After 2 comes 3, 4 or 6, depending on the tokens before it.
PATTERN = torch.tensor([0, 1, 2, 3, 1, 2, 4, 5, 2, 6, 7, 6])
VOCABULARY = 8
EMBEDDING_DIM = 16
HIDDEN = 32
# Positions from which the window's tokens so far determine the next one.
FIRST_SCORED_POSITION = 3


def windows(generator, count, length):
    """(inputs, targets), each (count, length): windows of the pattern at
    random offsets, and the same windows shifted by one token."""
    offsets = torch.randint(0, len(PATTERN), (count, 1), generator=generator)
    tokens = PATTERN[(offsets + torch.arange(length + 1)) % len(PATTERN)]
    return tokens[:, :-1], tokens[:, 1:]


class EmbeddingTable(nn.Module):
    """On the ps: a vector per token, drawn from ``seed``."""

    def __init__(self, vocabulary, dim, seed):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(vocabulary, dim, generator=generator))

    def forward(self, tokens):
        return F.embedding(tokens, self.weight)


class Decoder(nn.Module):
    """On the ps: logits over the vocabulary from the LSTM's outputs."""

    def __init__(self, hidden, vocabulary, seed):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(vocabulary, hidden, generator=generator) / math.sqrt(hidden))
        self.bias = nn.Parameter(torch.zeros(vocabulary))

    def forward(self, outputs):
        return F.linear(outputs, self.weight, self.bias)


def parameter_rrefs(module_rref):
    """Run on the module's owner: RRefs to its parameters."""
    return [rpc.RRef(p) for p in module_rref.local_value().parameters()]


class SplitModel:
    """The trainer's view of the model: embedding and decoder on the ps, the
    LSTM here."""

    def __init__(self, ps, seed):
        self.embedding_rref = rpc.remote(ps, EmbeddingTable, args=(VOCABULARY, EMBEDDING_DIM, seed))
        self.decoder_rref = rpc.remote(ps, Decoder, args=(HIDDEN, VOCABULARY, seed + 1))
        torch.manual_seed(seed + 2)
        self.lstm = nn.LSTM(EMBEDDING_DIM, HIDDEN, batch_first=True)

    def __call__(self, tokens):
        vectors = self.embedding_rref.rpc_sync().forward(tokens)
        outputs, _ = self.lstm(vectors)
        return self.decoder_rref.rpc_sync().forward(outputs)

    def parameter_rrefs(self):
        remote = [rpc.rpc_sync(rref.owner(), parameter_rrefs, args=(rref,))
                  for rref in (self.embedding_rref, self.decoder_rref)]
        return remote[0] + remote[1] + [rpc.RRef(p) for p in self.lstm.parameters()]


def next_token_accuracy(model, inputs, targets):
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=-1)
    scored = slice(FIRST_SCORED_POSITION, None)
    return (predicted[:, scored] == targets[:, scored]).float().mean().item()


def run_worker(rank, config):
    """Rank 0 is the trainer and drives everything; the ps only serves."""
    if rank != 0:
        return None
    model = SplitModel("ps", config.seed)
    optimizer = DistributedOptimizer(torch.optim.Adam, model.parameter_rrefs(), lr=config.lr)
    data = torch.Generator().manual_seed(config.seed)
    held_out = windows(torch.Generator().manual_seed(config.seed + 1000), 256, config.seq_len)
    history = []
    for epoch in range(config.epochs):
        total = 0.0
        for _ in range(config.steps):
            inputs, targets = windows(data, config.batch_size, config.seq_len)
            with dist_autograd.context() as context_id:
                logits = model(inputs)
                loss = F.cross_entropy(logits.reshape(-1, VOCABULARY), targets.reshape(-1))
                dist_autograd.backward(context_id, [loss])
                optimizer.step(context_id)
            total += loss.item()
        history.append({"train_loss": total / config.steps, "accuracy": next_token_accuracy(model, *held_out)})
        print(f"epoch {epoch}: train loss {history[-1]['train_loss']:.4f}  "
              f"held-out next-token accuracy {history[-1]['accuracy']:.4f}", flush=True)
    return {"history": history, "first_loss": history[0]["train_loss"], "final_loss": history[-1]["train_loss"],
            "accuracy": history[-1]["accuracy"]}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the whole job may take")
    config = parser.parse_args(argv)
    if min(config.epochs, config.steps, config.batch_size) < 1 or config.seq_len <= FIRST_SCORED_POSITION:
        parser.error(f"--epochs, --steps and --batch-size must be at least 1, "
                     f"--seq-len more than {FIRST_SCORED_POSITION}")
    return config


def main(argv=None):
    """Runs the job; returns {"first_loss", "final_loss": mean train loss of
    the first and last epoch, "accuracy": final held-out next-token
    accuracy, "history": per epoch, "seconds": wall time}."""
    config = parse_args(argv)
    start = time.monotonic()
    result = run_job(run_worker, ["trainer", "ps"], config, config.timeout)
    result["seconds"] = time.monotonic() - start
    print(f"loss {result['first_loss']:.4f} -> {result['final_loss']:.4f}, held-out next-token accuracy "
          f"{result['accuracy']:.4f} ({result['seconds']:.1f} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
