"""The optimisation pieces shared by scoring and recovery (the paper's settings)."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from .errors import UsageError


def check_sgd_settings(owner: str, iterations: int, min_iterations: int, batch_size: int, lr: float | None,
                       momentum: float, weight_decay: float, lr_drop_at: float) -> None:
    """ValueError naming the bad setting of a scoring or recovery config (``owner``)."""
    problems = []
    if iterations < min_iterations:
        problems.append(f"iterations must be at least {min_iterations}, got {iterations}")
    if batch_size < 1:
        problems.append(f"batch_size must be at least 1, got {batch_size}")
    if lr is not None and not (lr >= 0 and math.isfinite(lr)):  # 0 is allowed: tests freeze the weights that way
        problems.append(f"lr must be finite and >= 0, got {lr}")
    if not 0 <= momentum < 1:
        problems.append(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        problems.append(f"weight_decay must be >= 0, got {weight_decay}")
    if not 0 <= lr_drop_at <= 1:
        problems.append(f"lr_drop_at is a fraction of the iterations in [0, 1], got {lr_drop_at}")
    if problems:
        raise UsageError(f"{owner}: " + "; ".join(problems))


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
