"""Latency savings you can rank blocks by: paired, grouped, with intervals and ties.

One forward pass's wall time wanders by a few percent on a shared CPU, as much as one
block of a deep network costs, and the full model's own time drifts between runs; timing
every variant separately and subtracting medians therefore ranks blocks by noise
(Spearman 0.04 between two runs of resnet56's 25 blocks timed that way).
Three things make the estimate reproducible:

* **paired differences**: every repeat times the full model and the variant back to back
  (alternating which goes first), and the saving is the 20%-trimmed mean of those
  per-repeat differences, so drift common to both cancels and the rare slow pass is cut;
* **groups**: structurally identical blocks (same class, parameter shapes and input shape,
  e.g. resnet56's layer1.1-1.8) cost the same by construction; they are dropped together and
  the saving divided among them, which multiplies the signal by the group size and gives them
  one shared estimate;
* **adaptive repeats and ties**: repeats are added in rounds until every 95% interval (of the
  trimmed mean) is within +-``resolution`` per block or ``max_repeats`` is reached;
  groups whose intervals overlap are reported as ties (the measurement cannot order them).
  Each keeps its own estimate: pooling tied groups was tried and made estimates jump between
  runs whenever a borderline overlap came and went.
"""
from __future__ import annotations

import logging

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..device import resolve_device
from ..inputs import example_input
from ..modes import eval_mode, hooks_removed
from ..progress import Progress, silent
from ..tracing import check_module_name
from .backend import BACKENDS
from .config import LatencyConfig
from .measure import FULL, LatencySettings, LatencyStats, TimingSession

log = logging.getLogger(__name__)

ROUND = 10  # repeats added per round once the minimum is done


@dataclass
class Saving:
    """The latency saved by dropping ``blocks``, from paired passes against the full model."""

    blocks: list[str]
    reduction: float          # trimmed mean of the paired savings / median full-model latency
    low: float                # 95% interval of the reduction
    high: float
    pairs: int
    full: LatencyStats        # the full model's passes paired with this variant
    pruned: LatencyStats

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass
class BlockLatency:
    """One block's latency saving r_b (per block, when its group was timed together)."""

    block: str
    group: str                # the first block of its structural group
    group_size: int
    reduction: float          # the estimate used for ranking
    low: float                # 95% interval of the group's per-block saving
    high: float
    tie: int                  # blocks sharing a tie number cannot be ordered by the measurement
    ms_without: float         # full-model median minus this block's saving


TRIM = 0.2  # fraction cut from each end: spikes (another process waking up) fall outside


def trimmed_mean_interval(values: list[float], trim: float = TRIM, z: float = 1.96) -> tuple[float, float, float]:
    """The trimmed mean of ``values`` and its ~95% interval (Tukey-McLaughlin: the standard
    error from the winsorized variance). Robust to the rare slow pass like a median, but
    about 1.5x more efficient than one under the per-pass jitter of these machines."""
    s = sorted(values)
    n = len(s)
    g = int(trim * n)
    kept = s[g:n - g] if n - 2 * g > 0 else s
    centre = statistics.fmean(kept)
    if n < 4:
        return centre, s[0], s[-1]
    winsorized = [min(max(v, s[g]), s[n - g - 1]) for v in s]
    se = statistics.stdev(winsorized) / ((1 - 2 * g / n) * math.sqrt(n))
    return centre, centre - z * se, centre + z * se


def structural_groups(model: nn.Module, blocks: list[str], sample_shape: tuple[int, ...]) -> dict[str, list[str]]:
    """Blocks with the same class, configuration (their repr: child layers with strides,
    dilations, groups), parameter and buffer shapes and input shape, in block order (first
    member -> members). They do the same arithmetic on the same sizes."""
    shapes: dict[str, tuple] = {}
    modules = {b: check_module_name(model, b, "block") for b in blocks}

    def record(name):
        def hook(module, args):
            shapes[name] = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        return hook

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad(), eval_mode(model), hooks_removed([m.register_forward_pre_hook(record(n))
                                                           for n, m in modules.items()]):
        model(example_input(model, sample_shape, device=device))
    groups: dict[tuple, list[str]] = {}
    for name in blocks:
        m = modules[name]
        # repr carries what the shapes do not (strides, dilation, groups, activation choices)
        key = (type(m).__qualname__, repr(m), tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()),
               shapes.get(name, ("not called",)))
        groups.setdefault(key, []).append(name)
    return {members[0]: members for members in groups.values()}


def paired_savings(model: nn.Module, sample_shape: tuple[int, ...], variants: dict[str, list[str]],
                   config: LatencyConfig, progress: Progress = silent, shares: dict[str, int] | None = None,
                   decided: Callable[[Saving], bool] | None = None) -> tuple[dict[str, Saving], LatencySettings]:
    """The saving of every variant (name -> blocks to drop) against the full model.

    ``shares[name]`` divides a variant's interval before it is compared with
    ``config.resolution`` (a group of k identical blocks: the interval per block).
    ``decided`` stops adding rounds early once it holds for every saving (a selection
    whose interval lies wholly above or below the target needs no finer estimate)."""
    for blocks in variants.values():
        for name in blocks:
            check_module_name(model, name, "block")
    device = resolve_device(config.device)
    backend = BACKENDS.get(config.backend)
    runners = backend.prepare(model, {FULL: [], **variants}, sample_shape, config, device)
    names = list(variants)
    full: dict[str, list[float]] = {n: [] for n in names}
    pruned: dict[str, list[float]] = {n: [] for n in names}
    shares = shares or {}
    with TimingSession(sample_shape, config, device, model) as session:
        _warm_up(session, runners, config.warmup, progress)
        began, done = backend.clock(), 0
        while True:
            count = config.repeats if done == 0 else min(ROUND, config.resolved_max_repeats - done)
            _paired_round(session, runners, names, done, count, full, pruned, progress)
            done += count
            savings = {n: _saving(variants[n], full[n], pruned[n]) for n in names}
            reached = max(s.half_width / shares.get(n, 1) for n, s in savings.items())
            stopped_by = ("resolution" if reached <= config.resolution else
                          "decided" if decided is not None and all(decided(s) for s in savings.values()) else
                          "max_repeats" if done >= config.resolved_max_repeats else
                          "time budget" if config.budget_s is not None and backend.clock() - began >= config.budget_s
                          else None)
            if stopped_by:
                break
    if stopped_by == "time budget":
        log.warning("latency: time budget of %.0f s spent after %d paired repeats; intervals reached +-%.2f points "
                    "(aimed at +-%.2f); raise `budget_s` for finer estimates", config.budget_s, done, 100 * reached,
                    100 * config.resolution)
    return savings, session.settings(done, paired=True, stopped_by=stopped_by, reached=reached)


def _warm_up(session: TimingSession, runners: dict, passes: int, progress: Progress) -> None:
    progress.start("latency warm-up", passes * len(runners))
    try:
        for _ in range(passes):
            for runner in runners.values():
                session.timed(runner)
                progress.advance(1)
    finally:
        progress.end()


def _paired_round(session: TimingSession, runners: dict, names: list[str], start: int, count: int,
                  full: dict[str, list[float]], pruned: dict[str, list[float]], progress: Progress) -> None:
    """``count`` repeats; in each, every variant (rotated order) is timed right after or right
    before a full-model pass (alternating), so slow drifts hit both sides of a pair alike."""
    progress.start(f"latency (paired, repeats {start + 1}-{start + count})", count * len(names))
    try:
        for rep in range(start, start + count):
            shift = rep % len(names)
            for i, name in enumerate(names[shift:] + names[:shift]):
                if (rep + i) % 2 == 0:
                    full[name].append(session.timed(runners[FULL]))
                    pruned[name].append(session.timed(runners[name]))
                else:
                    pruned[name].append(session.timed(runners[name]))
                    full[name].append(session.timed(runners[FULL]))
                progress.advance(1)
    finally:
        progress.end()


def _saving(blocks: list[str], full: list[float], pruned: list[float]) -> Saving:
    reference = statistics.median(full)
    centre, low, high = trimmed_mean_interval([f - p for f, p in zip(full, pruned)])
    return Saving(list(blocks), centre / reference, low / reference, high / reference, len(full),
                  LatencyStats.from_samples(full), LatencyStats.from_samples(pruned))


UNCERTAIN = 0.01  # a selection's measured reduction is flagged when its interval is wider than +-1 point


def interval_warning(saving: Saving) -> str | None:
    """A warning when a measured reduction is not known to within +-1 point."""
    if saving.half_width <= UNCERTAIN:
        return None
    return (f"latency timings are noisy: the measured reduction {100 * saving.reduction:.1f}% has a 95% interval of "
            f"{100 * saving.low:.1f}-{100 * saving.high:.1f}% after {saving.pairs} paired repeats, so it is "
            "uncertain; measure on a quiet machine or raise `max_repeats`")


def measure_saving(model: nn.Module, sample_shape: tuple[int, ...], blocks: list[str], config: LatencyConfig,
                   progress: Progress = silent, target: float | None = None) -> tuple[Saving, LatencySettings]:
    """The measured reduction of the network with ``blocks`` dropped (a selection); with a
    ``target``, repeats stop as soon as the 95% interval lies wholly on one side of it."""
    decided = None if target is None else (lambda s: s.low >= target or s.high < target)
    savings, settings = paired_savings(model, sample_shape, {"pruned": list(blocks)}, config, progress,
                                       decided=decided)
    return savings["pruned"], settings


def block_latency_reductions(model: nn.Module, sample_shape: tuple[int, ...], blocks: list[str],
                             config: LatencyConfig, progress: Progress = silent
                             ) -> tuple[dict[str, float], dict[str, BlockLatency], LatencySettings]:
    """r_b for every block (see the module docstring): the estimate, its interval, group and tie."""
    groups = structural_groups(model, blocks, sample_shape) if config.group_identical else {b: [b] for b in blocks}
    savings, settings = paired_savings(model, sample_shape, groups, config, progress,
                                       shares={g: len(m) for g, m in groups.items()})
    per_block = {g: (s.reduction / len(groups[g]), s.low / len(groups[g]), s.high / len(groups[g]))
                 for g, s in savings.items()}
    ties = tie_classes(per_block)
    full_ms = statistics.median(s.full.median_ms for s in savings.values())
    details = {}
    for g, members in groups.items():
        estimate, low, high = per_block[g]
        for b in members:
            details[b] = BlockLatency(b, g, len(members), estimate, low, high, ties[g], full_ms * (1 - estimate))
    return {b: details[b].reduction for b in blocks}, details, settings


def tie_classes(per_block: dict[str, tuple[float, float, float]]) -> dict[str, int]:
    """Groups ordered by estimate; a group whose interval overlaps that of the first group of
    the current tie joins it, else it starts the next tie (numbered 0 = largest saving)."""
    order = sorted(per_block, key=lambda g: (-per_block[g][0], g))
    ties, tie, head = {}, -1, None
    for g in order:
        if head is None or per_block[g][2] < per_block[head][1]:  # entirely below the head's interval
            tie, head = tie + 1, g
        ties[g] = tie
    return ties
