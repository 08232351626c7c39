"""What every block-ranking criterion takes and returns, and the registry they live in.

A criterion is a function ``RankingInputs -> list[str]``: the candidate blocks ordered
best-to-drop first. ``selection`` then takes blocks in that order until a count or a
measured latency target is reached, so every criterion is held to the same budget and
recovery, which isolates the value of the ranking itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from ..registry import Registry
from ..errors import UsageError


@dataclass
class RankingInputs:
    names: list[str]                          # candidate blocks
    latency_reduction: dict[str, float]       # r_b per block
    seed: int = 0
    scores: dict[str, float] | None = None    # PRACTISE score per block (criterion "practise")
    model: nn.Module | None = None            # teacher (criterion "cosine")
    images: torch.Tensor | None = None        # tiny set, evaluation transform (criterion "cosine")
    batch_size: int = 256


@dataclass(frozen=True)
class Criterion:
    rank: Callable[[RankingInputs], list[str]]
    needs_scores: bool = False   # True: recoverability must be scored first (the expensive step)
    needs_images: bool = False   # True: ranks from the teacher's activations on the tiny set
    description: str = ""


CRITERIA: Registry[Criterion] = Registry("criterion")


def register_criterion(name: str, rank: Callable[[RankingInputs], list[str]], needs_scores: bool = False,
                       needs_images: bool = False, description: str = "") -> Criterion:
    """Add a criterion under ``name`` (refused if taken); it is then a valid
    ``CompressConfig.criterion`` and ``--criterion`` value."""
    return CRITERIA.register(name, Criterion(rank, needs_scores, needs_images, description))


def need(inputs: RankingInputs, field: str, criterion: str):
    """A field of ``inputs`` a criterion cannot rank without."""
    value = getattr(inputs, field)
    if value is None:
        raise UsageError(f"criterion {criterion!r} needs {field}")
    return value


def rank_blocks(criterion: str, inputs: RankingInputs) -> list[str]:
    """Candidate blocks ordered best-to-drop first by ``criterion`` (a registered name)."""
    return CRITERIA.get(criterion).rank(inputs)
