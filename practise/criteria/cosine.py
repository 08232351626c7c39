"""Baseline criterion: smallest 1 - cos(block input, block output) first, averaged over
the tiny set; the layer-dropping criterion of transformer pruning work (a block that
barely changes its input is assumed redundant)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..modes import eval_mode, hooks_removed
from .base import RankingInputs, need


@torch.no_grad()
def cosine_dissimilarity(model: nn.Module, names: list[str], images: torch.Tensor,
                         batch_size: int = 256) -> dict[str, float]:
    """Mean over images of 1 - cos(input, output) of each block, both flattened per image."""
    totals = {n: 0.0 for n in names}
    modules = {n: model.get_submodule(n) for n in names}

    def hook(name):
        def record(module, args, output):
            x, y = args[0].flatten(1), output.flatten(1)
            totals[name] += float((1 - F.cosine_similarity(x, y, dim=1)).sum())
        return record

    device = next(model.parameters()).device
    with eval_mode(model), hooks_removed([modules[n].register_forward_hook(hook(n)) for n in names]):
        for i in range(0, images.shape[0], batch_size):
            model(images[i:i + batch_size].to(device))
    return {n: t / images.shape[0] for n, t in totals.items()}


def rank_cosine(inputs: RankingInputs) -> list[str]:
    model, images = need(inputs, "model", "cosine"), need(inputs, "images", "cosine")
    dissimilarity = cosine_dissimilarity(model, inputs.names, images, inputs.batch_size)
    return sorted(inputs.names, key=lambda b: (dissimilarity[b], b))
