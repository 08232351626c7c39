"""Choosing which blocks to drop: by count (the paper) or by a measured latency target."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch.nn as nn

from .latency import LatencyConfig, LatencySettings, LatencyStats, interval_warning, measure_saving, noise_warning
from .latency.savings import Saving
from .progress import Progress, silent
from .errors import UnreachableTarget, UsageError

log = logging.getLogger(__name__)


@dataclass
class Selection:
    blocks: list[str]
    predicted_reduction: float                 # sum of the chosen blocks' r_b
    measured_reduction: float | None = None    # full vs pruned network, measured together
    full_latency: LatencyStats | None = None
    pruned_latency: LatencyStats | None = None
    latency_settings: LatencySettings | None = None
    trials: list[dict] = field(default_factory=list)  # every set measured on the way
    saving: Saving | None = None  # the paired measurement behind measured_reduction, with its interval

    @property
    def measured_interval(self) -> tuple[float, float] | None:
        return (self.saving.low, self.saving.high) if self.saving is not None else None

    @property
    def timing_warning(self) -> str | None:
        """Set when the final measurement is too noisy to trust (latency.interval_warning for
        paired measurements, latency.noise_warning otherwise)."""
        if self.saving is not None:
            decided = getattr(self.latency_settings, "stopped_by", None) == "decided"
            return None if decided else interval_warning(self.saving)  # its interval clears the target
        if self.full_latency is None or self.pruned_latency is None:
            return None
        return noise_warning(self.full_latency, self.pruned_latency)


def parse_target(text: str | float) -> float:
    """"22%" or "0.22" -> 0.22; anything outside (0, 1) is an error."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise UsageError(f"latency target {text!r} is not a number; use e.g. 22% or 0.22") from exc
    if not 0 < value < 1:
        raise UsageError(f"latency target {text!r} must lie strictly between 0% and 100%")
    return value


def measure_selection(model: nn.Module, sample_shape: tuple[int, ...], selection: Selection,
                      config: LatencyConfig, progress: Progress = silent, target: float | None = None) -> Selection:
    """Measure ``selection``'s pruned network against the full one (paired repeats) into it;
    with a ``target``, only until it is clear which side of the target it lies on."""
    saving, settings = measure_saving(model, sample_shape, selection.blocks, config, progress, target)
    selection.full_latency, selection.pruned_latency = saving.full, saving.pruned
    selection.measured_reduction, selection.saving = saving.reduction, saving
    selection.latency_settings = settings
    selection.trials.append({"blocks": list(selection.blocks), "predicted": selection.predicted_reduction,
                             "measured": selection.measured_reduction, "interval": [saving.low, saving.high]})
    return selection


def select_in_order(model: nn.Module, sample_shape: tuple[int, ...], order: list[str], latency_reduction: dict[str, float],
                    target: float, config: LatencyConfig, progress: Progress = silent) -> Selection:
    """Drop blocks in the given order until the *measured* reduction reaches ``target``.

    The first count tried is the one whose summed r_b (the prediction) reaches the target;
    one more block is added per measured shortfall, and blocks are taken off again while
    the measured reduction stays at or above the target (predictions can undershoot as
    well as overshoot), so the result is the shortest prefix that reaches it, as far as
    measurement noise allows. If the prediction never reaches the
    target (per-block savings need not add up), the count is found by bisection on
    measurements instead. Any ranking criterion (see criteria.py) can feed this.
    """
    if not order:
        raise UnreachableTarget("no candidate blocks to drop")
    trials: list[dict] = []

    def measure(count: int) -> Selection:
        chosen = list(order[:count])
        selection = measure_selection(model, sample_shape,
                                      Selection(chosen, sum(latency_reduction[b] for b in chosen)), config, progress,
                                      target)
        trials.extend(selection.trials)
        selection.trials = list(trials)
        log.info("drop %d blocks: predicted %.1f%%, measured %.1f%%", count, 100 * selection.predicted_reduction,
                 100 * selection.measured_reduction)
        return selection

    count = next((c for c in range(1, len(order) + 1)
                  if sum(latency_reduction[b] for b in order[:c]) >= target), None)
    if count is None:
        count = _bisect_measured(measure, len(order), target)
    short = 0  # the largest count measured to fall short
    while True:
        selection = measure(count)
        if selection.measured_reduction >= target:
            selection = _fewest_reaching(measure, selection, target, short)
            selection.trials = list(trials)  # every measurement made on the way
            return selection
        short = count
        if count == len(order):
            raise UnreachableTarget(
                f"latency target {100 * target:.1f}% is not reachable: dropping all {len(order)} candidate blocks "
                f"gives {100 * selection.measured_reduction:.1f}% measured reduction on this device; ask for at most that")
        count += 1


def _bisect_measured(measure, total: int, target: float) -> int:
    """Smallest count whose measured reduction reaches ``target`` (assuming it grows with count)."""
    if measure(total).measured_reduction < target:
        return total  # the caller measures again and reports the target as unreachable
    low, high = 0, total
    while high - low > 1:
        mid = (low + high) // 2
        if measure(mid).measured_reduction >= target:
            high = mid
        else:
            low = mid
    return high


def _fewest_reaching(measure, selection: Selection, target: float, short: int) -> Selection:
    """Take blocks off the end of a selection that reaches ``target`` while it still does
    (never down to ``short`` blocks or fewer, already measured to fall short)."""
    while len(selection.blocks) > max(1, short + 1):
        fewer = measure(len(selection.blocks) - 1)
        if fewer.measured_reduction < target:
            break
        selection = fewer
    return selection
