"""TorchScript functions the tests run on other workers, which find them by
qualified name (tests.script_fns.<name>)."""

from typing import Tuple

import torch


@torch.jit.script
def local_add(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    return torch.add(t1, t2)


@torch.jit.script
def scale(t: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    return t * factor


@torch.jit.script
def split_sum(t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return t.sum(), t.sum(dim=0)


@torch.jit.script
def identity(t: torch.Tensor) -> torch.Tensor:
    return t


@torch.jit.script
def check_positive(t: torch.Tensor) -> torch.Tensor:
    if bool((t <= 0).any()):
        raise ValueError("expected positive values")
    return t


@torch.jit.script
def mul_sin(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """A backward that needs tensors saved on the worker running it."""
    return t1 * torch.sin(t2)
