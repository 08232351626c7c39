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
    # what the selection will be asked for (one of the two), for criteria whose order depends on
    # how many blocks go (a contiguous span, greedy elimination's number of steps)
    target_latency: float | None = None
    num_blocks: int | None = None
    # (removed, left) -> the PRACTISE score of each block left, measured on the network with
    # ``removed`` dropped and repaired (criteria that re-score after each drop; iterative.py)
    rescore: Callable[[list[str], list[str]], dict[str, float]] | None = None


@dataclass(frozen=True)
class Criterion:
    rank: Callable[[RankingInputs], list[str]]
    needs_scores: bool = False   # True: recoverability must be scored first (the expensive step)
    needs_images: bool = False   # True: ranks from the teacher's activations on the tiny set
    needs_rescoring: bool = False  # True: re-scores recoverability after each drop (closed-form scoring)
    description: str = ""


CRITERIA: Registry[Criterion] = Registry("criterion")


def as_criterion(entry: Criterion | Callable[[RankingInputs], list[str]]) -> Criterion:
    return entry if isinstance(entry, Criterion) else Criterion(entry)


def register_criterion(name: str, criterion: Criterion | Callable[[RankingInputs], list[str]] | None = None):
    """Add a criterion under ``name`` (refused if taken): a :class:`Criterion`, or a bare
    ranking function (then it needs neither scores nor images). It is then a valid
    ``CompressConfig.criterion`` value. Without ``criterion``, a decorator."""
    return CRITERIA.add(name, criterion, as_criterion)


def need(inputs: RankingInputs, field: str, criterion: str):
    """A field of ``inputs`` a criterion cannot rank without."""
    value = getattr(inputs, field)
    if value is None:
        raise UsageError(f"criterion {criterion!r} needs {field}")
    return value


def blocks_for_target(inputs: RankingInputs, largest_first: bool) -> int | None:
    """How many blocks the selection will take: the count asked for, or the number whose
    latency savings first reach the target, taking the largest savings first (the fewest
    blocks that can) or the smallest first (the most it may need). None: neither is known."""
    if inputs.num_blocks is not None:
        return min(inputs.num_blocks, len(inputs.names))
    if inputs.target_latency is None:
        return None
    total = 0.0
    savings = sorted((inputs.latency_reduction[b] for b in inputs.names), reverse=largest_first)
    for count, saving in enumerate(savings, 1):
        total += saving
        if total >= inputs.target_latency:
            return count
    return len(savings)


RESERVE = 1  # greedy steps past the predicted count: the measured saving may fall short of the sum


def greedy_steps(inputs: RankingInputs) -> int:
    """How many blocks a greedy criterion removes one at a time: the most the selection may
    need (smallest savings first), plus the reserve; all of them when no count or target is given."""
    needed = blocks_for_target(inputs, largest_first=False)
    return len(inputs.names) if needed is None else min(len(inputs.names), needed + RESERVE)


def rank_blocks(criterion: str, inputs: RankingInputs) -> list[str]:
    """Candidate blocks ordered best-to-drop first by ``criterion`` (a registered name)."""
    return CRITERIA.get(criterion).rank(inputs)
