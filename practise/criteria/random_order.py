"""Baseline criterion: a seeded shuffle of the candidates."""
from __future__ import annotations

import torch

from .base import RankingInputs


def rank_random(inputs: RankingInputs) -> list[str]:
    order = torch.randperm(len(inputs.names), generator=torch.Generator().manual_seed(inputs.seed))
    return [inputs.names[i] for i in order.tolist()]
