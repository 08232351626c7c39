"""The optimisation pieces shared by scoring and recovery (the paper's settings)."""
from __future__ import annotations

from collections.abc import Iterator

import torch


def step_lr(step: int, lr: float, drop_at: float, iterations: int) -> float:
    """The paper's schedule: ``lr`` until ``drop_at`` of the iterations, then ``lr / 10``."""
    return lr * (0.1 if step >= int(drop_at * iterations) else 1.0)


def set_lr_(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def batch_indices(n: int, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless mini-batches over ``n`` items: reshuffled epochs, the last partial batch of
    each dropped (a DataLoader with drop_last), or the whole set if it is under one batch."""
    while True:
        order = torch.randperm(n, generator=generator)
        if n <= batch:
            yield order
            continue
        for i in range(0, n - batch + 1, batch):
            yield order[i:i + batch]
