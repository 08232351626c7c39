"""Filter (channel) pruning with Torch-Pruning: the scheme earlier few-shot methods compress
with, kept here as the baseline PRACTISE is compared against (and for acceleration studies).

Torch-Pruning (``pip install torch-pruning``) is optional: only this module needs it.
Pruning keeps a uniform fraction of channels in every prunable group, ranked by
filter-norm importance (L1 as in Li et al., "Pruning Filters for Efficient ConvNets").

Scopes:
* ``"inner"``: only channel groups that are not added to a residual stream (e.g. the
  middle of a basic block, the expansion of an inverted residual). The feature map
  before global pooling keeps the teacher's shape, so feature mimicking can recover it.
* ``"all"``: every group except the classifier's outputs, residual streams included.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .blocks import count_flops, count_params
from .latency import LatencyConfig, LatencySettings, measure_models, reduction
from .progress import Progress, silent

log = logging.getLogger(__name__)
SCOPES = ("inner", "all")
IMPORTANCES = ("l1", "l2")


def _torch_pruning():
    try:
        import torch_pruning
    except ImportError as exc:
        raise ImportError("channel pruning needs Torch-Pruning: pip install torch-pruning") from exc
    return torch_pruning


def _touches_residual_add(group) -> bool:
    """True if a Torch-Pruning group's channels flow into an elementwise addition."""
    for dep, _ in group:
        module = dep.target.module
        if type(module).__name__ == "_ElementWiseOp" and "Add" in str(module):
            return True
    return False


def _classifiers(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """Modules whose outputs are the model's outputs: their output channels must stay."""
    with torch.no_grad():
        out = model(example_input)
    width = out.shape[-1] if out.dim() == 2 else None
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == width]


def prune_channels(model: nn.Module, example_input: torch.Tensor, ratio: float, importance: str = "l1",
                   scope: str = "inner") -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the channels of each prunable group removed."""
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; valid choices: {', '.join(SCOPES)}")
    if importance not in IMPORTANCES:
        raise ValueError(f"unknown importance {importance!r}; valid choices: {', '.join(IMPORTANCES)}")
    if not 0 <= ratio < 1:
        raise ValueError(f"pruning ratio must lie in [0, 1), got {ratio}")
    tp = _torch_pruning()
    pruned = copy.deepcopy(model).eval()
    if ratio == 0:
        return pruned
    example_input = example_input.to(next(pruned.parameters()).device)
    pruner = tp.pruner.MetaPruner(pruned, example_input, pruning_ratio=ratio,
                                  importance=tp.importance.MagnitudeImportance(p=1 if importance == "l1" else 2),
                                  ignored_layers=_classifiers(pruned, example_input))
    for group in pruner.step(interactive=True):
        if scope == "all" or not _touches_residual_add(group):
            group.prune()
    return pruned


@dataclass
class PruningResult:
    model: nn.Module
    ratio: float
    measured_reduction: float
    flops_reduction: float
    params: int
    settings: LatencySettings | None = None
    trials: list[dict] = field(default_factory=list)


def prune_to_latency(model: nn.Module, sample_shape: tuple[int, ...], target: float, config: LatencyConfig,
                     importance: str = "l1", scope: str = "inner", steps: int = 7,
                     progress: Progress = silent) -> PruningResult:
    """The smallest uniform ratio (found by bisection) whose measured latency reduction,
    timed interleaved against ``model``, reaches ``target``. Raises if even 90% cannot."""
    example = torch.zeros(1, *sample_shape, device=next(model.parameters()).device)
    flops_full, _ = count_flops(model, example)
    trials: list[dict] = []

    def attempt(ratio: float) -> PruningResult:
        pruned = prune_channels(model, example, ratio, importance, scope)
        stats, settings = measure_models({"full": model, "pruned": pruned}, sample_shape, config, progress)
        measured = reduction(stats["full"], stats["pruned"])
        flops, _ = count_flops(pruned, example)
        trials.append({"ratio": ratio, "measured": measured, "flops_reduction": 1 - flops / flops_full})
        log.info("channel ratio %.3f: measured latency reduction %.1f%%", ratio, 100 * measured)
        return PruningResult(pruned, ratio, measured, 1 - flops / flops_full, count_params(pruned), settings)

    low, high = 0.0, 0.9
    best = attempt(high)
    if best.measured_reduction < target:
        raise ValueError(f"latency target {100 * target:.1f}% is not reachable by channel pruning: "
                         f"90% of channels ({scope}) gives {100 * best.measured_reduction:.1f}%")
    for _ in range(steps):
        mid = (low + high) / 2
        result = attempt(mid)
        if result.measured_reduction >= target:
            high, best = mid, result
        else:
            low = mid
    best.trials = trials
    return best
