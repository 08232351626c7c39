"""Choosing which blocks to drop: by count (the paper) or by a measured latency target."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch.nn as nn

from .latency import FULL, LatencyConfig, LatencySettings, LatencyStats, measure_variants, reduction
from .progress import Progress, silent
from .scoring import BlockScore

log = logging.getLogger(__name__)


class UnreachableTarget(ValueError):
    """The latency target cannot be met even with every candidate dropped."""


@dataclass
class Selection:
    blocks: list[str]
    predicted_reduction: float                 # sum of the chosen blocks' r_b
    measured_reduction: float | None = None    # full vs pruned network, measured together
    full_latency: LatencyStats | None = None
    pruned_latency: LatencyStats | None = None
    latency_settings: LatencySettings | None = None
    trials: list[dict] = field(default_factory=list)  # every set measured on the way


def parse_target(text: str | float) -> float:
    """"22%" or "0.22" -> 0.22; anything outside (0, 1) is an error."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise ValueError(f"latency target {text!r} is not a number; use e.g. 22% or 0.22") from exc
    if not 0 < value < 1:
        raise ValueError(f"latency target {text!r} must lie strictly between 0% and 100%")
    return value


def select_by_count(scores: list[BlockScore], count: int) -> Selection:
    """The ``count`` best-scoring blocks (the paper's one-shot rule)."""
    if not 1 <= count <= len(scores):
        raise ValueError(f"number of blocks must be between 1 and {len(scores)}, got {count}")
    chosen = sorted(scores, key=lambda s: (s.score, s.block))[:count]
    return Selection([s.block for s in chosen], sum(s.latency_reduction for s in chosen))


def measure_selection(model: nn.Module, sample_shape: tuple[int, ...], selection: Selection,
                      config: LatencyConfig, progress: Progress = silent) -> Selection:
    stats, settings = measure_variants(model, sample_shape, {FULL: [], "pruned": selection.blocks}, config, progress)
    selection.full_latency, selection.pruned_latency = stats[FULL], stats["pruned"]
    selection.measured_reduction = reduction(stats[FULL], stats["pruned"])
    selection.latency_settings = settings
    selection.trials.append({"blocks": list(selection.blocks), "predicted": selection.predicted_reduction,
                             "measured": selection.measured_reduction})
    return selection


def select_by_target(model: nn.Module, sample_shape: tuple[int, ...], scores: list[BlockScore], target: float,
                     config: LatencyConfig, progress: Progress = silent) -> Selection:
    """Add blocks in score order until the *measured* reduction of the pruned network reaches ``target``.

    Blocks are added while their summed r_b (the prediction) is below the target; then the
    pruned network is measured against the full one, and one more block is added per
    shortfall. Blocks with no measured saving (infinite score) come last.
    """
    ordered = sorted(scores, key=lambda s: (s.score, s.block))
    if not ordered:
        raise UnreachableTarget("no candidate blocks to drop")
    trials: list[dict] = []
    for count in range(1, len(ordered) + 1):
        chosen = ordered[:count]
        predicted = sum(c.latency_reduction for c in chosen)
        if predicted < target and count < len(ordered):
            continue
        selection = measure_selection(model, sample_shape, Selection([c.block for c in chosen], predicted),
                                      config, progress)
        trials += selection.trials
        selection.trials = list(trials)
        log.info("drop %d blocks: predicted %.1f%%, measured %.1f%%", count, 100 * predicted,
                 100 * selection.measured_reduction)
        if selection.measured_reduction >= target:
            return selection
    raise UnreachableTarget(
        f"latency target {100 * target:.1f}% is not reachable: dropping all {len(ordered)} candidate blocks "
        f"gives {100 * trials[-1]['measured']:.1f}% measured reduction on this device; ask for at most that")
