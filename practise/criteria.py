"""Orders in which to drop blocks: PRACTISE's score and the criteria it is compared with.

Each criterion ranks candidate blocks, best to drop first; ``selection.select_in_order``
then adds blocks in that order until a measured latency target is reached. Keeping every
criterion behind one signature lets a benchmark swap the criterion while holding the
latency budget and the recovery fixed, which isolates the value of recoverability.

* ``practise``: score R_b / r_b ascending (needs recoverability scores).
* ``random``: a seeded shuffle.
* ``latency``: largest measured latency saving r_b first.
* ``cosine``: smallest 1 - cos(block input, block output) first, averaged over the tiny
  set; the layer-dropping criterion of transformer pruning work (a block that barely
  changes its input is assumed redundant).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modes import eval_mode, hooks_removed

log = logging.getLogger(__name__)


@dataclass
class RankingInputs:
    names: list[str]                          # candidate blocks
    latency_reduction: dict[str, float]       # r_b per block
    seed: int = 0
    scores: dict[str, float] | None = None    # PRACTISE score per block (criterion "practise")
    model: nn.Module | None = None            # teacher (criterion "cosine")
    images: torch.Tensor | None = None        # tiny set, evaluation transform (criterion "cosine")
    batch_size: int = 256


def _need(inputs: RankingInputs, field: str, criterion: str):
    value = getattr(inputs, field)
    if value is None:
        raise ValueError(f"criterion {criterion!r} needs {field}")
    return value


def rank_practise(inputs: RankingInputs) -> list[str]:
    scores = _need(inputs, "scores", "practise")
    return sorted(inputs.names, key=lambda b: (scores[b], b))


def rank_random(inputs: RankingInputs) -> list[str]:
    order = torch.randperm(len(inputs.names), generator=torch.Generator().manual_seed(inputs.seed))
    return [inputs.names[i] for i in order.tolist()]


def rank_latency(inputs: RankingInputs) -> list[str]:
    return sorted(inputs.names, key=lambda b: (-inputs.latency_reduction[b], b))


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
    model, images = _need(inputs, "model", "cosine"), _need(inputs, "images", "cosine")
    dissimilarity = cosine_dissimilarity(model, inputs.names, images, inputs.batch_size)
    return sorted(inputs.names, key=lambda b: (dissimilarity[b], b))


CRITERIA: dict[str, Callable[[RankingInputs], list[str]]] = {
    "practise": rank_practise,
    "random": rank_random,
    "latency": rank_latency,
    "cosine": rank_cosine,
}


def rank_blocks(criterion: str, inputs: RankingInputs) -> list[str]:
    """Candidate blocks ordered best-to-drop first by ``criterion`` (a name in CRITERIA)."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid choices: {', '.join(CRITERIA)}")
    return CRITERIA[criterion](inputs)
