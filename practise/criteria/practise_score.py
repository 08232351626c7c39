"""PRACTISE's criterion: the score R_b / r_b ascending (recoverability per unit of latency saved)."""
from __future__ import annotations

from .base import RankingInputs, need


def rank_practise(inputs: RankingInputs) -> list[str]:
    scores = need(inputs, "scores", "practise")
    return sorted(inputs.names, key=lambda b: (scores[b], b))
