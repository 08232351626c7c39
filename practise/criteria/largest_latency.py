"""Baseline criterion: the largest measured latency saving r_b first."""
from __future__ import annotations

from .base import RankingInputs


def rank_latency(inputs: RankingInputs) -> list[str]:
    return sorted(inputs.names, key=lambda b: (-inputs.latency_reduction[b], b))
