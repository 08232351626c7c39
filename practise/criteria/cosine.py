"""Baseline criterion: smallest 1 - cos(block input, block output) first, averaged over
the tiny set; the layer-dropping criterion of transformer pruning work (ShortGPT's block
influence: a block that barely changes its input is assumed redundant).

Image blocks compare each image's whole map; token blocks (batch, tokens, width) compare
each token's vector and average over the real tokens (padding left out)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..call_structure import primary_input, primary_output
from ..inputs import token_mask
from ..modes import eval_mode, hooks_removed
from .base import RankingInputs, need


def _dissimilarity(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, float]:
    """(sum of 1 - cos, weight) over the examples (images) or real tokens of a batch."""
    if x.dim() == 3:  # tokens
        per_token = 1 - F.cosine_similarity(x.float(), y.float(), dim=-1)
        weights = mask.to(per_token.dtype) if mask is not None else torch.ones_like(per_token)
        per_example = (per_token * weights).sum(1) / weights.sum(1).clamp(min=1)
        return float(per_example.sum()), x.shape[0]
    return float((1 - F.cosine_similarity(x.flatten(1), y.flatten(1), dim=1)).sum()), x.shape[0]


@torch.no_grad()
def cosine_dissimilarity(model: nn.Module, names: list[str], images: torch.Tensor,
                         batch_size: int = 256) -> dict[str, float]:
    """Mean over the examples of 1 - cos(input, output) of each block."""
    totals = {n: 0.0 for n in names}
    modules = {n: model.get_submodule(n) for n in names}
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def hook(name):
        def record(module, args, kwargs, output):
            x, (y, _) = primary_input(args, kwargs), primary_output(output)
            totals[name] += _dissimilarity(x, y, current["mask"])[0]
        return record

    device = next(model.parameters()).device
    handles = [modules[n].register_forward_hook(hook(n), with_kwargs=True) for n in names]
    with eval_mode(model), hooks_removed(handles):
        for i in range(0, images.shape[0], batch_size):
            batch = images[i:i + batch_size].to(device)
            current["mask"] = token_mask(model, batch)
            model(batch)
    return {n: t / images.shape[0] for n, t in totals.items()}


def rank_cosine(inputs: RankingInputs) -> list[str]:
    model, images = need(inputs, "model", "cosine"), need(inputs, "images", "cosine")
    dissimilarity = cosine_dissimilarity(model, inputs.names, images, inputs.batch_size)
    return sorted(inputs.names, key=lambda b: (dissimilarity[b], b))
