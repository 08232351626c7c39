"""Tools to test the paper's theory on any model (claims 2 and 3 of the method):

* the variance, across tiny sets, of the parameters and outputs a recovery method ends
  with (feature mimicking should vary less than cross-entropy finetuning);
* the loss along straight lines in weight space, from the pruned start to a recovered
  solution and between two solutions, and how far it rises above its chord
  (finetune convexity: a convex loss never rises above the chord).

BatchNorm running statistics are not weights: averaging two networks' statistics along
a path describes neither network. ``reestimate_bn_`` recomputes them at every point of
a path from the tiny set (cumulative average over train-mode passes), the usual remedy
in mode-connectivity work; the choice is a parameter of ``path_losses``.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

import torch
import torch.nn as nn

log = logging.getLogger(__name__)
StateDict = dict[str, torch.Tensor]


def float_state(model: nn.Module) -> StateDict:
    """The model's learnable parameters (not BN statistics or counters), detached copies."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def parameter_variance(states: list[StateDict]) -> tuple[dict[str, float], float]:
    """Variance across runs of each parameter element, averaged per tensor and overall.

    Returns (per-tensor mean variance, mean over all elements).
    """
    if len(states) < 2:
        raise ValueError(f"variance needs at least 2 runs, got {len(states)}")
    keys = list(states[0])
    per_tensor, total, count = {}, 0.0, 0
    for key in keys:
        stacked = torch.stack([s[key].float() for s in states])
        var = stacked.var(dim=0, unbiased=True)
        per_tensor[key] = float(var.mean())
        total += float(var.sum())
        count += var.numel()
    return per_tensor, total / count


@torch.no_grad()
def output_variance(models: list[nn.Module], images: torch.Tensor, batch_size: int = 500) -> float:
    """Variance across models of the logits, averaged over images and classes."""
    if len(models) < 2:
        raise ValueError(f"variance needs at least 2 models, got {len(models)}")
    total, count = 0.0, 0
    device = next(models[0].parameters()).device
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size].to(device)
        logits = torch.stack([m.eval()(x) for m in models])
        var = logits.var(dim=0, unbiased=True)
        total += float(var.sum())
        count += var.numel()
    return total / count


def interpolate(a: StateDict, b: StateDict, t: float) -> StateDict:
    """(1 - t) * a + t * b for every floating tensor (integer buffers are taken from a)."""
    return {k: torch.lerp(a[k].float(), b[k].float(), t).to(a[k].dtype) if a[k].is_floating_point() else a[k]
            for k in a}


@torch.no_grad()
def reestimate_bn_(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """Recompute every BatchNorm's running mean/var from ``images`` (cumulative average of the
    per-batch statistics, so batches count equally)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    try:
        for i in range(0, images.shape[0], batch_size):
            model(images[i:i + batch_size].to(device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return model


def path_losses(model: nn.Module, start: StateDict, end: StateDict, metrics: Callable[[nn.Module], dict[str, float]],
                points: int = 11, bn_images: torch.Tensor | None = None) -> dict[str, list[float]]:
    """Evaluate ``metrics(model)`` (name -> value, one pass for all) at ``points`` evenly
    spaced points from ``start`` (t=0) to ``end`` (t=1); returns name -> values along t.

    ``start``/``end`` are full state dicts of ``model``'s architecture; ``bn_images``, if
    given, re-estimates BatchNorm statistics at every point (else they are interpolated).
    The caller's model is not changed.
    """
    if points < 3:
        raise ValueError(f"a path needs at least 3 points, got {points}")
    probe = copy.deepcopy(model)
    results: dict[str, list[float]] = {}
    for i in range(points):
        probe.load_state_dict(interpolate(start, end, i / (points - 1)))
        if bn_images is not None:
            reestimate_bn_(probe, bn_images)
        probe.eval()
        for name, value in metrics(probe).items():
            results.setdefault(name, []).append(float(value))
    return results


def convexity_gap(values: list[float]) -> float:
    """Largest rise of a curve above the chord joining its ends (0 or less: on/below the chord)."""
    n = len(values) - 1
    return max(v - (values[0] + (values[-1] - values[0]) * i / n) for i, v in enumerate(values))


def barrier_height(values: list[float]) -> float:
    """Largest rise above the higher of the two end points (the loss barrier between solutions)."""
    return max(values) - max(values[0], values[-1])
