"""Baseline criterion: the contiguous span of least angular distance (Gromov et al., "The
Unreasonable Ineffectiveness of the Deeper Layers", 2024; the selector ReplaceMe uses).

For a span of ``n`` consecutive blocks starting at ``l``, the angular distance
``arccos(cos(h_l, h_{l+n})) / pi`` between the hidden state entering block ``l`` and the one
leaving block ``l+n-1``, averaged over the tiny set's real tokens (or each image's whole map);
the span with the least distance is dropped. ``n`` is the block count asked for, or the
fewest blocks whose latency savings reach the target. So that the selection can still take
one block more or less, the order is: the best span, then the blocks next to it, nearer side
by its own distance first, so that every prefix of the order stays contiguous.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..call_structure import primary_input, primary_output
from ..inputs import token_mask
from ..modes import eval_mode, hooks_removed
from .base import RankingInputs, blocks_for_target, need


@torch.no_grad()
def span_distances(model: nn.Module, names: list[str], data: torch.Tensor, lengths: list[int],
                   batch_size: int = 64) -> dict[int, dict[int, float]]:
    """length -> start index -> mean angular distance over spans of that many consecutive
    ``names``, all from one pass over ``data``."""
    totals = {n: {s: 0.0 for s in range(len(names) - n + 1)} for n in lengths}
    weight = 0.0
    modules = [model.get_submodule(n) for n in names]
    device = next(model.parameters()).device
    for i in range(0, data.shape[0], batch_size):
        x = data[i:i + batch_size].to(device)
        states: dict[int, torch.Tensor] = {}

        def entering(k):
            def hook(module, args, kwargs):
                states[k] = primary_input(args, kwargs)
            return hook

        def leaving(module, args, kwargs, output):
            states[len(names)] = primary_output(output)[0]

        handles = [m.register_forward_pre_hook(entering(k), with_kwargs=True) for k, m in enumerate(modules)]
        handles.append(modules[-1].register_forward_hook(leaving, with_kwargs=True))
        with hooks_removed(handles):
            model(x)
        mask = token_mask(model, x)
        for length, by_start in totals.items():
            for s in by_start:
                distance, count = _angular(states[s], states[s + length], mask)
                by_start[s] += distance
        weight += count
    return {n: {s: t / weight for s, t in by_start.items()} for n, by_start in totals.items()}


def _angular(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, float]:
    """(sum of arccos(cos)/pi, weight) over the real tokens (token streams) or examples (maps)."""
    if a.dim() == 3:
        cos = F.cosine_similarity(a.float(), b.float(), dim=-1)
        weights = mask.float() if mask is not None else torch.ones_like(cos)
    else:
        cos = F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1)
        weights = torch.ones_like(cos)
    distance = torch.arccos(cos.clamp(-1, 1)) / math.pi
    return float((distance * weights).sum()), float(weights.sum())


def span_length(inputs: RankingInputs) -> int:
    """The block count asked for, or the fewest blocks whose savings reach the latency target."""
    return blocks_for_target(inputs, largest_first=True) or 1


def rank_angular_span(inputs: RankingInputs) -> list[str]:
    model, data = need(inputs, "model", "angular"), need(inputs, "images", "angular")
    names = inputs.names
    length = span_length(inputs)
    with eval_mode(model):
        found = span_distances(model, names, data, [length, 1], inputs.batch_size)
    spans, single = found[length], found[1]
    start = min(spans, key=lambda s: (spans[s], s))
    order = names[start:start + length]
    low, high = start - 1, start + length  # grow contiguously, the closer-to-identity neighbour first
    while low >= 0 or high < len(names):
        if high >= len(names) or (low >= 0 and single[low] <= single[high]):
            order.append(names[low])
            low -= 1
        else:
            order.append(names[high])
            high += 1
    return order
