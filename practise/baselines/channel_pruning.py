"""Filter (channel) pruning with Torch-Pruning: the scheme earlier few-shot methods compress
with, kept here as the baseline PRACTISE is compared against (and for acceleration studies).

Torch-Pruning (``pip install torch-pruning``) is optional: only this module needs it.
Pruning keeps a uniform fraction of channels in every prunable group, ranked by
filter-norm importance (L1 as in Li et al., "Pruning Filters for Efficient ConvNets").

Scopes:
* ``"inner"``: only channel groups that are not added to a residual stream (e.g. the
  middle of a basic block, the expansion of an inverted residual).
* ``"features"``: every group except the channels of the feature map before global
  pooling (the last convolution feeding it, and everything coupled to it, such as the
  last stage's residual stream), so feature mimicking can still recover the network.
* ``"all"``: every group except the classifier's outputs, residual streams included.

"inner" and "features" keep the teacher's feature-map shape.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..blocks import count_flops, count_params
from ..features import forward_features
from ..latency import LatencyConfig, LatencySettings, measure_models, reduction
from ..modes import hooks_removed
from ..progress import Progress, silent
from ..errors import UsageError

log = logging.getLogger(__name__)
SCOPES = ("inner", "features", "all")
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


def _feature_producers(tp, model: nn.Module, example_input: torch.Tensor, feature_layer: str) -> list[nn.Module]:
    """Convolutions whose output channels are the feature map's: the last convolution run
    before the feature layer's output, and every convolution Torch-Pruning couples to it."""
    order: list[nn.Module] = []
    with torch.no_grad(), hooks_removed([m.register_forward_hook(lambda mod, args, out: order.append(mod))
                                         for m in model.modules() if isinstance(m, nn.Conv2d)]):
        forward_features(model, example_input, feature_layer)
    if not order:
        raise UsageError(f"no convolution runs before feature layer {feature_layer!r}")
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    group = graph.get_pruning_group(order[-1], tp.prune_conv_out_channels, idxs=[0])
    return [dep.target.module for dep, _ in group
            if isinstance(dep.target.module, nn.Conv2d) and dep.handler == tp.prune_conv_out_channels]


def prune_channels(model: nn.Module, example_input: torch.Tensor, ratio: float, importance: str = "l1",
                   scope: str = "inner", feature_layer: str | None = None, round_to: int | None = None) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the channels of each prunable group removed.

    Scope "features" needs ``feature_layer`` (the module whose output is mimicked).
    ``round_to`` keeps each pruned group's channel count a multiple of it (Torch-Pruning's
    option; CPU and GPU convolution kernels are often faster on multiples of 8).
    """
    if scope not in SCOPES:
        raise UsageError(f"unknown pruning scope {scope!r}; valid choices: {', '.join(SCOPES)}")
    if importance not in IMPORTANCES:
        raise UsageError(f"unknown importance {importance!r}; valid choices: {', '.join(IMPORTANCES)}")
    if not 0 <= ratio < 1:
        raise UsageError(f"pruning ratio must lie in [0, 1), got {ratio}")
    if round_to is not None and round_to < 1:
        raise UsageError(f"round_to must be a positive channel count or None, got {round_to}")
    if scope == "features" and feature_layer is None:
        raise UsageError("pruning scope 'features' needs the feature layer (the module whose output is mimicked)")
    tp = _torch_pruning()
    pruned = copy.deepcopy(model).eval()
    if ratio == 0:
        return pruned
    example_input = example_input.to(next(pruned.parameters()).device)
    protected = _classifiers(pruned, example_input)
    if scope == "features":
        protected += _feature_producers(tp, pruned, example_input, feature_layer)
    pruner = tp.pruner.MetaPruner(pruned, example_input, pruning_ratio=ratio,
                                  importance=tp.importance.MagnitudeImportance(p=1 if importance == "l1" else 2),
                                  ignored_layers=protected, round_to=round_to)
    for group in pruner.step(interactive=True):
        if scope != "inner" or not _touches_residual_add(group):
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
                     importance: str = "l1", scope: str = "inner", steps: int = 4, max_ratio: float = 0.9,
                     scan_step: float = 0.1, feature_layer: str | None = None, round_to: int | None = None,
                     progress: Progress = silent) -> PruningResult:
    """The smallest uniform ratio whose measured latency reduction, timed interleaved
    against ``model``, reaches ``target``.

    Latency need not fall monotonically with the ratio (convolutions with a handful of
    channels can miss the fast kernels), so ratios are scanned upwards in ``scan_step``
    steps up to ``max_ratio`` until one reaches the target, then refined by bisection
    between it and the previous step. Raises if no scanned ratio reaches the target.
    """
    example = torch.zeros(1, *sample_shape, device=next(model.parameters()).device)
    flops_full, _ = count_flops(model, example)
    trials: list[dict] = []
    # Nearby ratios can give the same network (always so with round_to); its first
    # measurement stands, so the search cannot re-time one network until a noisy draw passes.
    measured_by_shape: dict[tuple, tuple[float, LatencySettings | None, int]] = {}

    def attempt(ratio: float) -> PruningResult:
        pruned = prune_channels(model, example, ratio, importance, scope, feature_layer, round_to)
        shape = tuple((name, tuple(p.shape)) for name, p in pruned.named_parameters())
        repeat = shape in measured_by_shape
        if not repeat:
            stats, settings = measure_models({"full": model, "pruned": pruned}, sample_shape, config, progress)
            measured_by_shape[shape] = (reduction(stats["full"], stats["pruned"]), settings, count_flops(pruned, example)[0])
        measured, settings, flops = measured_by_shape[shape]
        trials.append({"ratio": ratio, "measured": measured, "flops_reduction": 1 - flops / flops_full,
                       "same_network_as_earlier_trial": repeat})
        log.info("channel ratio %.3f: measured latency reduction %.1f%%%s", ratio, 100 * measured,
                 " (same network as an earlier trial)" if repeat else "")
        return PruningResult(pruned, ratio, measured, 1 - flops / flops_full, count_params(pruned), settings)

    scan = [round(scan_step * i, 6) for i in range(1, int(max_ratio / scan_step + 1e-9) + 1)]
    low, best = 0.0, None
    for ratio in scan:
        result = attempt(ratio)
        if result.measured_reduction >= target:
            best = result
            break
        low = ratio
    if best is None:
        top = max(trials, key=lambda t: t["measured"])
        raise UsageError(f"latency target {100 * target:.1f}% is not reachable by channel pruning ({scope}): "
                         f"the best of ratios {scan[0]:g}-{scan[-1]:g} is {100 * top['measured']:.1f}% "
                         f"at ratio {top['ratio']:g}")
    high = best.ratio
    for _ in range(steps):
        mid = (low + high) / 2
        result = attempt(mid)
        if result.measured_reduction >= target:
            high, best = mid, result
        else:
            low = mid
    best.trials = trials
    return best
